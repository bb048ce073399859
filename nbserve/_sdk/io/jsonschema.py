"""The `/schema.json` form of a type: pydantic's validation-mode JSON schema, reshaped the way
BentoML's client reads it, plus the words and examples error messages use.

Reshaping (`flatten`):
- `$defs` are inlined (BentoML's client never follows `$ref`); a recursive model keeps its
  `$ref` and a `$defs` entry, since it cannot be inlined.
- `Optional[X]` (`anyOf: [X, null]`) becomes X's schema plus `"nullable": true`, as BentoML
  flattens it: the client finds `type: file|tensor|dataframe` at the top of the property.
  Other unions keep their `anyOf`.
- A fixed tuple (`prefixItems`) gets `"items": {}`, because BentoML's client indexes
  `schema["items"]` of every array property.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue

__all__ = ["QuietJsonSchema", "describe", "example_of", "flatten", "format_shape"]

_MISSING = object()


class QuietJsonSchema(GenerateJsonSchema):
    """pydantic's generator without its warnings: a default that has no JSON form (a `Path`,
    an array) is simply left out of the schema rather than warning at every decoration."""

    def emit_warning(self, kind: Any, detail: str) -> None:
        return None


def flatten(schema: JsonSchemaValue) -> JsonSchemaValue:
    """Inline `$defs` and simplify `Optional`; see the module docstring."""
    defs: dict[str, Any] = schema.pop("$defs", {})
    kept: dict[str, Any] = {}

    def resolve(name: str, stack: tuple[str, ...]) -> Any:
        if name in stack:
            if name not in kept:
                kept[name] = {}  # placeholder; filled below, breaking the cycle
                kept[name] = walk(defs[name], (*stack, name))
            return None
        return walk(defs[name], (*stack, name))

    def walk(node: Any, stack: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [walk(item, stack) for item in node]
        if not isinstance(node, dict):
            return node
        node = dict(node)
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = resolve(ref[len("#/$defs/") :], stack)
            if target is None:
                return node  # recursive: keep the reference
            del node["$ref"]
            return {**target, **{k: walk(v, stack) for k, v in node.items()}}
        for key in ("properties", "patternProperties"):
            if isinstance(node.get(key), dict):
                node[key] = {k: walk(v, stack) for k, v in node[key].items()}
        for key in (
            "items",
            "additionalProperties",
            "prefixItems",
            "anyOf",
            "oneOf",
            "allOf",
            "not",
        ):
            if key in node:
                node[key] = walk(node[key], stack)
        if "prefixItems" in node and "items" not in node:
            node["items"] = {}
        if len(node.get("allOf", ())) == 1:
            (only,) = node.pop("allOf")
            node = {**only, **node}
        any_of = node.get("anyOf")
        if isinstance(any_of, list):
            rest = [s for s in any_of if s != {"type": "null"}]
            if len(rest) == 1 and len(any_of) == 2:
                del node["anyOf"]
                node = {**rest[0], **node, "nullable": True}
        return node

    out: dict[str, Any] = walk(schema, ())
    if kept:
        out["$defs"] = kept
    return out


def format_shape(shape: Sequence[int]) -> str:
    """A shape as Python writes a tuple: `(3, 4)`, `(3,)`."""
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


_STRING_FORMATS = {
    "date-time": ("an ISO 8601 date-time", "2024-01-31T12:00:00Z"),
    "date": ("an ISO 8601 date", "2024-01-31"),
    "time": ("an ISO 8601 time", "12:00:00"),
    "duration": ("an ISO 8601 duration", "PT1H"),
    "uuid": ("a UUID", "123e4567-e89b-12d3-a456-426614174000"),
    "uri": ("a URL", "https://example.com"),
    "email": ("an email address", "user@example.com"),
}


def describe(schema: Any, depth: int = 0) -> tuple[str, Any]:
    """What a value of this schema is, in words, and an example value (`_MISSING` when the
    value cannot be written as JSON, e.g. a file)."""
    if not isinstance(schema, dict) or depth > 6:
        return "a JSON value", _MISSING
    if schema.get("enum"):
        values = ", ".join(_json(v) for v in schema["enum"][:8])
        return f"one of {values}", schema["enum"][0]
    if "const" in schema:
        return _json(schema["const"]), schema["const"]
    for key in ("anyOf", "oneOf"):
        branches = [s for s in schema.get(key, ()) if s != {"type": "null"}]
        if branches:
            described = [describe(s, depth + 1) for s in branches[:4]]
            return " or ".join(d[0] for d in described), described[0][1]
    kind = schema.get("type")
    if kind == "string":
        if schema.get("format") in _STRING_FORMATS:
            return _STRING_FORMATS[schema["format"]]
        return "a string", "hello"
    if kind == "integer":
        return "an integer", 2
    if kind == "number":
        return "a number", 1.5
    if kind == "boolean":
        return "true or false", True
    if kind == "null":
        return "null", None
    if kind == "array":
        return "a JSON array", _array_example(schema, depth)
    if kind == "object":
        return "a JSON object", _object_example(schema, depth)
    if kind == "tensor":
        return _describe_tensor(schema)
    if kind == "dataframe":
        cols = schema.get("columns") or ["a", "b"]
        if schema.get("orient") == "columns":
            return "an object of column lists", {c: [1, 2] for c in cols[:2]}
        return "a list of row objects", [{c: i + 1 for i, c in enumerate(cols[:2])}]
    if kind == "file":
        return "a file (a multipart/form-data part)", _MISSING
    return "a JSON value", 1


def _array_example(schema: dict[str, Any], depth: int) -> Any:
    if "prefixItems" in schema:
        items = [describe(s, depth + 1)[1] for s in schema["prefixItems"]]
        return _MISSING if _MISSING in items else items
    example = describe(schema.get("items", {}), depth + 1)[1]
    return _MISSING if example is _MISSING else [example]


def _object_example(schema: dict[str, Any], depth: int) -> Any:
    props = schema.get("properties")
    if isinstance(props, dict):
        required = set(schema.get("required", ())) or set(props)
        out = {k: describe(v, depth + 1)[1] for k, v in props.items() if k in required}
        return {k: v for k, v in out.items() if v is not _MISSING}
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        value = describe(extra, depth + 1)[1]
        return {} if value is _MISSING else {"key": value}
    return {"key": "value"}


_EXAMPLE_DIM = 8
"""Declared sizes up to this are shown in full in an example; a larger one gets no example."""


def _describe_tensor(schema: dict[str, Any]) -> tuple[str, Any]:
    shape = schema.get("shape")
    words = "a nested list of numbers"
    if shape:
        words += f" of shape {format_shape(shape)}"
    if schema.get("dtype"):
        words += f" ({schema['dtype']})"
    # An example of exactly the declared shape (1 for a free size), so that sending it passes.
    # Without a declared shape: one row of two columns, the shape most models take (a 1-D
    # example taught people to send 1-D arrays to models that need rows).
    dims = [d if d > 0 else 1 for d in shape] if shape else [1, 2]
    if any(d > _EXAMPLE_DIM for d in dims) or len(dims) > 4:
        return words, _MISSING  # (2, 784) would be a 1,568-number example: the words say it
    integer = str(schema.get("dtype", "")).startswith(("int", "uint"))
    count = iter(range(1, 1 + _EXAMPLE_DIM**4))

    def fill(level: int) -> Any:
        if level == len(dims):
            n = next(count)
            return n if integer else float(n)
        return [fill(level + 1) for _ in range(dims[level])]

    return words, fill(0)


def example_of(schema: Any) -> Any:
    """An example value for this schema, or `None` when it has no JSON form."""
    value = describe(schema)[1]
    return None if value is _MISSING else value


def _json(value: Any) -> str:
    import orjson

    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return repr(value)
