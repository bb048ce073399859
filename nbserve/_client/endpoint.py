"""What a client knows about one API: read from `/schema.json`, used to bind call arguments.

The schema document is BentoML's (reference §2.7): `routes[]` with `name`, `route`, `input`,
`output` and the optional `doc`, `is_task`; `output.is_stream` marks a stream. nbserve adds
`output.sse: true` when the server frames stream items as Server-Sent Events; BentoML servers
never send it, so against them the client falls back to one item per transport chunk.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from nbserve.exceptions import NbserveError

__all__ = ["Endpoint", "bind_arguments", "is_file_schema", "parse_schema", "signature_for"]

JSONSchema = dict[str, Any]


@dataclass(frozen=True)
class Endpoint:
    """One API of the remote service, as `/schema.json` describes it."""

    name: str
    route: str
    input: JSONSchema
    output: JSONSchema
    doc: str | None = None
    is_stream: bool = False
    sse: bool = False
    is_task: bool = False

    @property
    def is_root(self) -> bool:
        """The request body *is* the single positional-only argument (`def f(self, x, /)`)."""
        return bool(self.input.get("root_input", False))

    @cached_property
    def properties(self) -> dict[str, JSONSchema]:
        props = self.input.get("properties")
        return props if isinstance(props, dict) else {}

    @cached_property
    def file_fields(self) -> frozenset[str]:
        """The parameters sent as multipart file parts; none means a JSON body."""
        return frozenset(name for name, schema in self.properties.items() if is_file_schema(schema))

    @cached_property
    def item_schema(self) -> JSONSchema:
        """The output schema of one item (for streams) or of the whole response."""
        return {k: v for k, v in self.output.items() if k not in ("is_stream", "media_type", "sse")}


def is_file_schema(schema: JSONSchema) -> bool:
    """A file field: `type: file`, an array of them, or an `anyOf` with one (`Path | None`)."""
    kind = schema.get("type")
    if kind == "file":
        return True
    if kind == "array" and isinstance(schema.get("items"), dict):
        return is_file_schema(schema["items"])
    return any(is_file_schema(s) for s in schema.get("anyOf", ()) if isinstance(s, dict))


def parse_schema(document: Any, source: str) -> dict[str, Endpoint]:
    """Endpoints keyed by API name, in the server's order. `source` names the URL for errors."""
    routes = document.get("routes") if isinstance(document, Mapping) else None
    if not isinstance(routes, list):
        msg = f"The schema at {source} has no 'routes' list; is this an nbserve or BentoML 1.4 server? Got: {str(document)[:200]!r}"
        raise NbserveError(msg)
    endpoints: dict[str, Endpoint] = {}
    for route in routes:
        try:
            name, path = str(route["name"]), str(route["route"])
            input_schema, output_schema = dict(route["input"]), dict(route["output"])
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"A route in the schema at {source} lacks {exc}; each route needs 'name', 'route', 'input' and 'output': {str(route)[:200]!r}"
            raise NbserveError(msg) from None
        doc = route.get("doc")
        endpoints[name] = Endpoint(
            name=name,
            route=path if path.startswith("/") else "/" + path,
            input=input_schema,
            output=output_schema,
            doc=doc if isinstance(doc, str) and doc else None,
            is_stream=bool(output_schema.get("is_stream", False)),
            sse=output_schema.get("sse") is True,
            is_task=bool(route.get("is_task", False)),
        )
    return endpoints


def bind_arguments(
    endpoint: Endpoint, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """Map positional arguments onto `input.properties` in order and check the names.

    Raises `TypeError` naming every unknown, duplicated or missing argument, like a Python call.
    """
    names = list(endpoint.properties)
    if len(args) > len(names):
        msg = f"{endpoint.name}() takes {len(names)} positional argument{'s' if len(names) != 1 else ''} ({', '.join(names) or 'none'}) but {len(args)} were given"
        raise TypeError(msg)
    bound = dict(zip(names, args, strict=False))
    duplicated = sorted(k for k in kwargs if k in bound)
    if duplicated:
        msg = f"{endpoint.name}() got multiple values for argument{'s' if len(duplicated) > 1 else ''} {', '.join(map(repr, duplicated))}"
        raise TypeError(msg)
    unknown = sorted(k for k in kwargs if k not in endpoint.properties)
    if unknown:
        msg = f"{endpoint.name}() got unexpected argument{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; it accepts {', '.join(names) or 'no arguments'}"
        raise TypeError(msg)
    bound.update(kwargs)
    missing = [k for k in endpoint.input.get("required", ()) if k not in bound]
    if missing:
        msg = f"{endpoint.name}() missing required argument{'s' if len(missing) > 1 else ''}: {', '.join(map(repr, missing))}"
        raise TypeError(msg)
    return bound


def signature_for(endpoint: Endpoint) -> inspect.Signature:
    """A Python signature for the generated method, so `help()` and tab completion show it."""
    if endpoint.is_root:
        return inspect.Signature([inspect.Parameter("value", inspect.Parameter.POSITIONAL_ONLY)])
    required = set(endpoint.input.get("required", ()))
    params: list[inspect.Parameter] = []
    kind: inspect._ParameterKind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    for name, schema in endpoint.properties.items():
        if not name.isidentifier():
            continue
        default = inspect.Parameter.empty if name in required else schema.get("default")
        if default is inspect.Parameter.empty and params and params[-1].default is not default:
            # Required after optional is legal in a schema (keyword-only parameters), not in a
            # positional signature, so it and the rest become keyword-only.
            kind = inspect.Parameter.KEYWORD_ONLY
        params.append(inspect.Parameter(name, kind, default=default))
    return inspect.Signature(params)
