"""Turning pydantic's serialization-mode JSON schema (draft 2020-12) into an OpenAPI 3.0
Schema Object, with named models moved to `components.schemas`.

OpenAPI 3.0 predates 2020-12, so: `$defs` go to components and `$ref`s are rewritten;
`anyOf [X, null]` becomes `nullable: true`; `const` becomes a one-value `enum`; `prefixItems`
(fixed tuples) becomes `items: {anyOf: [...]}`; numeric `exclusiveMinimum`/`Maximum` become
the 3.0 boolean form; `examples` becomes `example`; a `$ref` with siblings is wrapped in
`allOf`; and keywords 3.0 does not know are dropped.
"""

from __future__ import annotations

from typing import Any

__all__ = ["to_openapi"]

_REF_PREFIX = "#/components/schemas/"

# The Schema Object's fixed fields in OpenAPI 3.0.3; anything else (bar `x-`) is invalid there.
_ALLOWED = frozenset(
    {
        "title", "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum",
        "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems",
        "maxProperties", "minProperties", "required", "enum", "type", "allOf", "oneOf",
        "anyOf", "not", "items", "properties", "additionalProperties", "description", "format",
        "default", "nullable", "discriminator", "readOnly", "writeOnly", "example",
        "externalDocs", "deprecated", "$ref",
    }
)  # fmt: skip
_NULL = {"type": "null"}


def to_openapi(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """Convert `schema` and add its `$defs` to `components` (the document's
    `components.schemas` mapping). A name already there with a different schema gets a
    numbered name (`Item2`), and references are rewritten to match."""
    schema = dict(schema)
    defs: dict[str, Any] = schema.pop("$defs", {})
    names = _claim_names(defs, components)
    for name, definition in defs.items():
        components[names[name]] = _convert(definition, names)
    converted: dict[str, Any] = _convert(schema, names)
    return converted


def _claim_names(defs: dict[str, Any], components: dict[str, Any]) -> dict[str, str]:
    names: dict[str, str] = {}
    identity = {name: name for name in defs}
    for name, definition in defs.items():
        final, n = name, 1
        # Same name, same schema (one model used by two APIs): share the component.
        while final in components and components[final] != _convert(definition, identity):
            n += 1
            final = f"{name}{n}"
        names[name] = final
    return names


def _convert(node: Any, names: dict[str, str]) -> Any:
    if isinstance(node, list):
        return [_convert(item, names) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    node = dict(node)

    ref = node.pop("$ref", None)
    if isinstance(ref, str):
        target = {"$ref": _REF_PREFIX + names.get(ref.rsplit("/", 1)[-1], ref.rsplit("/", 1)[-1])}
        rest = _convert(node, names)
        return {"allOf": [target], **rest} if rest else target

    kind = node.pop("type", None)
    nullable = bool(node.pop("nullable", False))
    if isinstance(kind, list):
        nullable = nullable or "null" in kind
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
        if len(kinds) > 1:
            node["anyOf"] = [{"type": k} for k in kinds]
    if kind == "null":
        return {"nullable": True, "enum": [None]}
    if kind is not None:
        out["type"] = kind

    for key in ("anyOf", "oneOf"):
        branches = node.pop(key, None)
        if branches is None:
            continue
        rest = [b for b in branches if b != _NULL]
        nullable = nullable or len(rest) < len(branches)
        converted = [_convert(b, names) for b in rest]
        if len(converted) == 1:
            only = converted[0]
            # A lone branch merges in, unless it is a reference (3.0 ignores $ref siblings).
            out.update({"allOf": [only]} if "$ref" in only else only)
        elif converted:
            out[key] = converted

    if "const" in node:
        out["enum"] = [node.pop("const")]
    if "examples" in node:
        examples = node.pop("examples")
        if isinstance(examples, list) and examples:
            out["example"] = examples[0]
    for bound, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = node.pop(bound, None)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[flag] = value
            out[bound] = True

    prefix = node.pop("prefixItems", None)
    if prefix is not None:
        items = []
        for item in (_convert(p, names) for p in prefix):
            if item not in items:
                items.append(item)
        node["items"] = items[0] if len(items) == 1 else {"anyOf": items}

    for key, value in node.items():
        if key.startswith("x-"):
            out[key] = value
        elif key not in _ALLOWED:
            continue
        elif key == "properties":
            out[key] = {k: _convert(v, names) for k, v in value.items()}
        elif key in ("items", "not", "allOf"):
            out[key] = _convert(value, names)
        elif key == "additionalProperties":
            out[key] = _convert(value, names) if isinstance(value, dict) else value
        elif key == "discriminator" and isinstance(value, dict):
            mapping = {
                k: _REF_PREFIX + names.get(v.rsplit("/", 1)[-1], v.rsplit("/", 1)[-1])
                for k, v in value.get("mapping", {}).items()
            }
            out[key] = {**value, **({"mapping": mapping} if mapping else {})}
        else:
            out[key] = value

    if out.get("type") == "array" and "items" not in out:
        out["items"] = {}  # 3.0 requires items on every array
    if nullable:
        out["nullable"] = True
    return out
