"""Turning a pydantic `ValidationError` into the `InvalidArgument` a client reads.

Each message names the field, says what was expected and what was received, and shows what to
send, e.g. `1 validation error for Input: field 'times': Input should be a valid integer (got
'abc'); send an integer, e.g. {"times": 2}`. Problems with the body as a whole (not JSON, not
an object) get their own sentence. `detail` keeps pydantic's machine-readable list, as
BentoML's error body does: `[{"loc": [...], "msg": ..., "type": ...}]`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from nbserve._sdk.io.jsonschema import describe
from nbserve.exceptions import InvalidArgument

__all__ = ["ErrorContext", "field_error", "invalid_argument"]

_GOT_LIMIT = 60
_BODY_ERRORS = frozenset({"dict_type", "model_type", "model_attributes_type", "typed_dict_type"})


def field_error(template: str, /, kind: str, **context: Any) -> PydanticCustomError:
    """The error a custom validator raises: pydantic adds the field's location, and
    `invalid_argument` turns it into a sentence. `template` uses `{name}` from `context`."""
    return PydanticCustomError(kind, template, context)


def _json(value: Any) -> str:
    # The stdlib's spacing (`{"times": 2}`) reads better in a sentence than orjson's.
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


@dataclass(frozen=True)
class ErrorContext:
    """What an input looks like, prepared once per API for its error messages."""

    root: bool
    """A root input: the body is the value itself, so locations start inside it."""
    example_body: str
    """An example request body, e.g. `{"text": "hello", "times": 2}`."""
    hints: Mapping[str, tuple[str, str | None]]
    """Per field: what to send in words, and an example body with just that field."""
    root_hint: tuple[str, str | None] = ("a JSON value", None)

    @classmethod
    def build(cls, schema: Mapping[str, Any], *, root: bool) -> ErrorContext:
        if root:
            words, example = describe(schema)
            example_text = _example_text(example)
            return cls(True, example_text or "", {}, (words, example_text))
        hints: dict[str, tuple[str, str | None]] = {}
        body: dict[str, Any] = {}
        for name, prop in schema.get("properties", {}).items():
            words, example = describe(prop)
            text = _example_text({name: example}) if _example_text(example) is not None else None
            hints[name] = (words, text)
            if text is not None:
                body[name] = example
        return cls(False, _json(body), hints)


def _example_text(example: Any) -> str | None:
    try:
        return _json(example)
    except (TypeError, ValueError):
        return None  # no JSON form (a file)


def _got(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _GOT_LIMIT else text[: _GOT_LIMIT - 3] + "..."


def _path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe_json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "a JSON array"
    if isinstance(value, str):
        return "a JSON string"
    if isinstance(value, bool):
        return "a JSON boolean"
    if isinstance(value, int | float):
        return "a JSON number"
    if value is None:
        return "null"
    return type(value).__name__


def _body_message(error: ErrorDetails, ctx: ErrorContext) -> str | None:
    """A sentence for an error about the whole body, or None if it is about a field."""
    kind = error["type"]
    if kind == "json_invalid":
        reason = error.get("ctx", {}).get("error", error["msg"])
        if ctx.root:
            return f"Request body is not valid JSON: {reason}; send {ctx.root_hint[0]}, e.g. {ctx.example_body}"
        return f"Request body is not valid JSON: {reason}; send a JSON object keyed by parameter name, e.g. {ctx.example_body}"
    if kind in _BODY_ERRORS and not ctx.root:
        return f"Request body must be a JSON object keyed by parameter name, not {_describe_json_kind(error.get('input'))}; send e.g. {ctx.example_body}"
    return None


def _field_message(error: ErrorDetails, ctx: ErrorContext) -> str:
    loc = error["loc"]
    kind = error["type"]
    where = f"field '{_path(loc)}'" if loc else "Request body"
    words, example = ctx.root_hint if ctx.root else ctx.hints.get(str(loc[0]), ("", None))
    top_level = len(loc) == (0 if ctx.root else 1)
    if kind == "missing":
        hint = f", e.g. {example}" if top_level and example else ""
        return f"{where} is required{hint}"
    if kind == "content_type":
        info = error.get("ctx", {})
        return (
            f"Invalid content type {info.get('got')} for {where}, expected {info.get('expected')}"
        )
    # pydantic says "..., unable to parse string as an integer"; "(got 'abc')" says it better.
    msg = error["msg"].split(", unable to ")[0]
    text = f"{where}: {msg}"
    if "input" in error and kind != "tensor_shape":
        text += f" (got {_got(error['input'])})"
    if top_level and words and kind != "file_expected":
        text += f"; send {words}" + (f", e.g. {example}" if example else "")
    return text


def invalid_argument(exc: ValidationError, ctx: ErrorContext) -> InvalidArgument:
    """The client-facing error for a failed validation."""
    errors = exc.errors(include_url=False)
    detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
    for error in errors:
        if not error["loc"]:
            sentence = _body_message(error, ctx)
            if sentence is not None:
                return InvalidArgument(sentence, detail=detail)
    lines = [_field_message(e, ctx) for e in errors]
    count = f"{len(lines)} validation error{'s' if len(lines) != 1 else ''} for Input"
    if len(lines) == 1:
        return InvalidArgument(f"{count}: {lines[0]}", detail=detail)
    return InvalidArgument(count + ":\n" + "\n".join(f"- {line}" for line in lines), detail=detail)
