"""`OutputSpec`: an API's response side, built once at decoration from its return type.

How a value travels (reference/bentoml.md §2.3, §10 A.5-6):
- `str` -> the raw text, `text/plain; charset=utf-8` (or the `ContentType` annotated on it);
- `bytes` -> the raw bytes, with BentoML's `text/plain; charset=utf-8` unless annotated;
- `Path` -> the file's bytes, media type from its suffix, `Content-Disposition` inline for
  images and attachment otherwise, with the file name (BentoML's client keeps its suffix);
- `PIL.Image.Image` -> the image saved in its own format (PNG if unknown), `image/<format>`;
- anything else -> compact JSON (`encoding.dumps`); a DataFrame in its declared orient.
Streams (generator APIs) encode each item alone (`encode_item`): text raw, bytes raw, anything
else one JSON document, so each item fits one HTTP chunk as BentoML's client expects.

Return values are not validated against the annotation (that would cost a pydantic pass on
every response); the annotation decides the schema and the wire form only.
"""

from __future__ import annotations

import collections.abc
import copy
import inspect
import io
import mimetypes
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import Any, get_args, get_origin
from urllib.parse import quote

from pydantic import BaseModel, TypeAdapter

from nbserve._sdk.io import annotations as ann
from nbserve._sdk.io.dataframe import dataframe_to_jsonable
from nbserve._sdk.io.encoding import dumps
from nbserve._sdk.io.jsonschema import QuietJsonSchema, flatten
from nbserve._sdk.io.payload import Payload
from nbserve._sdk.io.schema_objects import to_openapi
from nbserve._sdk.io.signature import SCHEMA_ERRORS, first_line, qualname, return_hint, type_name
from nbserve.exceptions import ServiceDefinitionError
from nbserve.validators import DataframeSchema

__all__ = ["OutputSpec", "output_spec_for"]

STREAM_MEDIA_TYPE = "text/event-stream"
_TEXT = "text/plain; charset=utf-8"
_STREAM_ORIGINS = frozenset(
    {
        collections.abc.Iterator,
        collections.abc.Generator,
        collections.abc.AsyncIterator,
        collections.abc.AsyncGenerator,
        collections.abc.Iterable,
        collections.abc.AsyncIterable,
    }
)


def _with_charset(media_type: str) -> str:
    if media_type.startswith("text/") and "charset" not in media_type:
        return media_type + "; charset=utf-8"
    return media_type


class OutputSpec:
    """How one API writes its response. Built by `output_spec_for`; see docs/internals.md."""

    def __init__(
        self,
        *,
        adapter: TypeAdapter[Any],
        kind: ann.Kind = "json",
        is_stream: bool = False,
        content_type: str | None = None,
        orient: str | None = None,
    ) -> None:
        self.is_stream = is_stream
        self.kind = kind
        self._content_type = content_type
        self._orient = orient
        schema = flatten(adapter.json_schema(schema_generator=QuietJsonSchema))
        self._openapi_schema = adapter.json_schema(
            mode="serialization", schema_generator=QuietJsonSchema
        )
        if is_stream:
            self.media_type = content_type or STREAM_MEDIA_TYPE
            schema["is_stream"] = True
            schema["media_type"] = self.media_type
        else:
            self.media_type = self._media_type()
            if content_type is not None:
                schema["media_type"] = content_type
        self._schema = schema
        encoders: dict[str, Callable[[Any], Payload]] = {
            "text": self._encode_raw,
            "bytes": self._encode_raw,
            "file": self._encode_file,
            "image": self._encode_image,
            "json": self._encode_json,
        }
        self._encoder = encoders[kind]
        self._json_media = content_type if kind == "json" and content_type else "application/json"

    def __repr__(self) -> str:
        return f"OutputSpec(kind={self.kind!r}, media_type={self.media_type!r}, is_stream={self.is_stream})"

    def _media_type(self) -> str:
        declared = self._content_type
        if self.kind in ("text", "bytes"):
            return _with_charset(declared) if declared else _TEXT
        if self.kind == "file":
            return declared if declared and "*" not in declared else "application/octet-stream"
        if self.kind == "image":
            return declared or "image/*"
        return declared or "application/json"

    # -- schemas -------------------------------------------------------------------------

    def json_schema(self) -> dict[str, Any]:
        """The JSON schema `/schema.json` shows for the output (a fresh copy)."""
        return copy.deepcopy(self._schema)

    def openapi(self, components: dict[str, Any]) -> dict[str, Any]:
        """The 200 response's OpenAPI `content` mapping; named models are added to
        `components` (the document's `components.schemas`)."""
        schema = to_openapi(self._openapi_schema, components)
        return {self.media_type.split(";")[0]: {"schema": schema}}

    # -- encoding ------------------------------------------------------------------------

    def encode(self, value: Any) -> Payload:
        """The response for a (non-stream) return value."""
        return self._encoder(value)

    def encode_item(self, item: Any) -> bytes:
        """One stream item: text and bytes raw, anything else one JSON document."""
        if isinstance(item, str):
            return item.encode()
        if isinstance(item, bytes | bytearray | memoryview):
            return bytes(item)
        return dumps(item)

    def _encode_json(self, value: Any) -> Payload:
        if self._orient is not None and hasattr(value, "to_dict") and hasattr(value, "columns"):
            value = dataframe_to_jsonable(value, self._orient)
        return Payload(dumps(value), self._json_media, {})

    def _encode_raw(self, value: Any) -> Payload:
        """`str` and `bytes` APIs: text and bytes go raw, anything else as JSON."""
        if isinstance(value, str | bytes | bytearray | memoryview):
            return Payload(self.encode_item(value), self.media_type, {})
        return self._encode_json(value)

    def _encode_file(self, value: Any) -> Payload:
        if isinstance(value, bytes | bytearray | memoryview):
            return Payload(bytes(value), self.media_type, {})
        if not isinstance(value, str | PurePath):
            return self._encode_json(value)
        path = Path(value)
        guessed = mimetypes.guess_type(path.name)[0]
        media_type = guessed or self.media_type
        disposition = "inline" if media_type.startswith("image/") else "attachment"
        return Payload(
            path.read_bytes(),
            _with_charset(media_type),
            {"Content-Disposition": _content_disposition(disposition, path.name)},
        )

    def _encode_image(self, value: Any) -> Payload:
        if isinstance(value, bytes | str | PurePath):
            return self._encode_file(value)
        image_format = getattr(value, "format", None) or "PNG"
        buffer = io.BytesIO()
        value.save(buffer, format=image_format)
        return Payload(buffer.getvalue(), f"image/{image_format.lower()}", {})


def _content_disposition(disposition: str, filename: str) -> str:
    """As Starlette's FileResponse writes it: RFC 6266 `filename*` for non-ASCII names."""
    quoted = quote(filename)
    if quoted != filename:
        return f"{disposition}; filename*=utf-8''{quoted}"
    return f'{disposition}; filename="{filename}"'


def _stream_item(hint: Any) -> tuple[bool, Any]:
    """`(True, T)` for `Iterator[T]`, `Generator[T, ...]`, `AsyncGenerator[T, ...]`, ..."""
    base, _ = ann.split_annotated(hint)
    if get_origin(base) in _STREAM_ORIGINS or base in _STREAM_ORIGINS:
        args = get_args(base)
        return True, args[0] if args else Any
    return False, hint


def output_spec_for(
    func: Callable[..., Any],
    *,
    output_spec: type[BaseModel] | None = None,
) -> OutputSpec:
    """Build the `OutputSpec` of an API from its return annotation (or an explicit
    `output_spec` model). A generator function, or an `Iterator[T]`-like annotation, makes a
    stream of T."""
    where = qualname(func)
    generator = inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func)
    if output_spec is not None:
        given: Any = output_spec  # typed as a model class, but this is where a wrong one is caught
        if not (isinstance(given, type) and issubclass(given, BaseModel)):
            msg = f"{where}: output_spec={output_spec!r} must be a pydantic BaseModel subclass"
            raise ServiceDefinitionError(msg)
        hint: Any = output_spec
        media_type = getattr(output_spec, "media_type", None)
        options: dict[str, Any] = {
            "is_stream": generator,
            "content_type": media_type if isinstance(media_type, str) else None,
        }
    else:
        is_stream, hint = _stream_item(return_hint(func))
        is_stream = is_stream or generator
        base, metadata = ann.split_annotated(hint)
        orient = None
        if ann.is_dataframe(base):
            schema = next(
                (m for m in metadata if isinstance(m, DataframeSchema)), DataframeSchema()
            )
            orient = schema.orient
        options = {
            "kind": "json" if is_stream else ann.kind_of(hint),
            "is_stream": is_stream,
            "content_type": None if is_stream else ann.content_type_of(metadata),
            "orient": orient,
        }
    try:
        return OutputSpec(adapter=TypeAdapter(ann.prepare(hint)), **options)
    except ServiceDefinitionError as exc:
        msg = f"{where}: return type: {exc}"
        raise ServiceDefinitionError(msg) from None
    except SCHEMA_ERRORS as exc:
        msg = f"{where}: return type {type_name(hint)} has no JSON schema nbserve can publish ({first_line(exc)}); return a JSON type, a pydantic model, np.ndarray, pd.DataFrame, torch.Tensor, Path or PIL.Image.Image, or pass output_spec= to @api"
        raise ServiceDefinitionError(msg) from None
