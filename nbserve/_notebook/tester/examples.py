"""Example values built from an API's `/schema.json` entry: what the tester pre-fills and what a
load test sends when the user gives no body.

One implementation, in Python: the widget receives the examples with the schema, so the form's
JSON editors and `load_test()` agree on what "the example" is. Every example validates against
its schema (strings "string", numbers their minimum or 0, tensors zeros of their shape with
free dimensions as 1, data frames one row of their columns); file fields have none (the user
picks a file).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["example_body", "example_value", "field_examples", "is_file"]

_MISSING = object()


def is_file(prop: Mapping[str, Any]) -> bool:
    """A `Path` / `PIL.Image` / file input, sent as a multipart file part."""
    if prop.get("type") == "file":
        return True
    if prop.get("type") == "array":
        items = prop.get("items")
        return isinstance(items, Mapping) and items.get("type") == "file"
    return any(is_file(p) for p in _alternatives(prop))


def _alternatives(prop: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    options = prop.get("anyOf") or prop.get("oneOf") or []
    return [p for p in options if isinstance(p, Mapping) and p.get("type") != "null"]


def _zeros(shape: list[int], dtype: str) -> Any:
    zero: Any = 0.0 if "float" in dtype else (False if dtype == "bool" else 0)
    if not shape:
        return zero
    first, *rest = shape
    return [_zeros(rest, dtype) for _ in range(first if first > 0 else 1)]


def example_value(prop: Mapping[str, Any], *, use_default: bool = True) -> Any:
    """A value valid for the JSON-schema property `prop` (its default when it has one that is
    not null and `use_default`)."""
    if use_default and prop.get("default", None) is not None:
        return prop["default"]
    if "examples" in prop and isinstance(prop["examples"], list) and prop["examples"]:
        return prop["examples"][0]
    if prop.get("enum"):
        return prop["enum"][0]
    if "const" in prop:
        return prop["const"]
    alternatives = _alternatives(prop)
    if alternatives and "type" not in prop:
        return example_value(alternatives[0])
    kind = prop.get("type")
    if kind == "tensor":
        return _zeros([int(d) for d in prop.get("shape") or [1]], str(prop.get("dtype") or "float"))
    if kind == "dataframe":
        columns = list(prop.get("columns") or ["a", "b"])
        if prop.get("orient") == "columns":
            return {c: [0] for c in columns}
        return [dict.fromkeys(columns, 0)]
    if kind == "string":
        return "string"
    if kind in ("integer", "number"):
        low = prop.get("minimum", prop.get("exclusiveMinimum", 0))
        value = low + (1 if "exclusiveMinimum" in prop and "minimum" not in prop else 0)
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return False
    if kind == "array":
        items = prop.get("items")
        return [example_value(items)] if isinstance(items, Mapping) else []
    if kind == "object" or "properties" in prop:
        props = prop.get("properties") or {}
        return {
            name: example_value(sub)
            for name, sub in props.items()
            if isinstance(sub, Mapping) and not is_file(sub)
        }
    if kind == "file":
        return None
    return None


def field_examples(input_schema: Mapping[str, Any]) -> dict[str, Any]:
    """Per input field, the value its form control starts with (files: none).

    Defaults win, except a `None` default (an optional model): there the example of the model
    is shown, since an editor holding `null` teaches nothing.
    """
    if input_schema.get("root_input"):
        return {"": example_value(input_schema)}
    props = input_schema.get("properties") or {}
    return {
        name: example_value(prop)
        for name, prop in props.items()
        if isinstance(prop, Mapping) and not is_file(prop)
    }


def example_body(route: Mapping[str, Any]) -> Any:
    """The request body a load test sends by default: the required fields' examples (a root
    input's example as is). Raises ValueError for an API with a required file input."""
    schema = route.get("input") or {}
    if schema.get("root_input"):
        return example_value(schema)
    props = schema.get("properties") or {}
    required = set(schema.get("required") or ())
    body: dict[str, Any] = {}
    for name, prop in props.items():
        if name not in required:
            continue
        if is_file(prop):
            msg = f"{route.get('route')} needs a file in {name!r}; a load test sends JSON bodies only: give body= or bodies=, or test an API without file inputs"
            raise ValueError(msg)
        body[name] = example_value(prop)
    return body
