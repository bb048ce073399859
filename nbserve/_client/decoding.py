"""Responses to Python values, driven by the API's output schema (reference §2.3, §2.5, §3.3).

- Status ≥ 400 becomes the `nbserve.exceptions` class for the status, whose message is the
  server's `error` field plus a summary of `detail` when the body is JSON (BentoML sends both
  `{"error": ...}` and, for some 4xx, `[{"error": ...}]`), else the body text.
- `type: string` → `str` (`bytes` when `format: binary`); `type: file` → a `Path` named after the
  `Content-Disposition` filename (a PIL image when `pil: true`); anything else is JSON, decoded
  recursively: `tensor` → numpy array (torch / TensorFlow for their formats), `dataframe` →
  pandas DataFrame. numpy, pandas, torch and PIL are imported only when a response needs them.

Downloaded files live in one per-process temporary directory removed at interpreter exit, so a
returned Path outlives the client that fetched it; copy it elsewhere to keep it.
"""

from __future__ import annotations

import atexit
import email.message
import importlib
import io
import mimetypes
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from nbserve._client.endpoint import Endpoint, JSONSchema
from nbserve.exceptions import (
    InvalidArgument,
    NbserveError,
    NotFound,
    RequestTimeout,
    ServiceUnavailable,
    TooManyRequests,
    UnprocessableEntity,
    UnsupportedMediaType,
)

__all__ = ["decode_body", "decode_value", "error_from_payload", "error_from_response"]

_ERRORS: dict[int, type[NbserveError]] = {
    400: InvalidArgument,
    404: NotFound,
    415: UnsupportedMediaType,
    422: UnprocessableEntity,
    429: TooManyRequests,
    503: ServiceUnavailable,
    504: RequestTimeout,
}
_REQUEST_ID_HEADERS = ("x-nbserve-request-id", "x-bentoml-request-id", "x-request-id")
_download_root: Path | None = None


def error_from_response(status: int, body: bytes, headers: Mapping[str, str]) -> NbserveError:
    """The exception for an HTTP error response."""
    try:
        payload: Any = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        payload = None
    if isinstance(payload, list) and payload and isinstance(payload[0], dict):
        payload = payload[0]  # BentoML's 4xx body is `[{"error": ...}]` (reference §2.5)
    if isinstance(payload, dict) and "error" in payload:
        exc = error_from_payload(payload, status)
    else:
        text = body.decode(errors="replace").strip()
        exc = _ERRORS.get(status, NbserveError)(
            text or f"HTTP {status} with an empty body", error_code=status
        )
    request_id = next((headers[h] for h in _REQUEST_ID_HEADERS if h in headers), None)
    if status >= 500 and request_id:
        # 5xx messages are generic by design; the id finds the traceback in the server log.
        exc.message = f"{exc.message} (request id {request_id})"
        exc.args = (exc.message,)
    return exc


def error_from_payload(payload: Mapping[str, Any], status: int) -> NbserveError:
    """The exception for an `{"error": ..., "detail": ...}` object (a body or an SSE error event)."""
    message = str(payload.get("error") or f"HTTP {status}")
    detail = payload.get("detail")
    summary = _summarise(detail)
    if summary and summary not in message:
        message = f"{message}: {summary}"
    return _ERRORS.get(status, NbserveError)(message, error_code=status, detail=detail)


def _summarise(detail: Any) -> str:
    """One line for a pydantic-style `[{"loc": [...], "msg": ...}]` list, a string or a value."""
    if detail is None or detail == "" or detail == []:
        return ""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list) and all(isinstance(d, dict) and "msg" in d for d in detail):
        parts = []
        for d in detail:
            loc = ".".join(str(p) for p in d.get("loc") or ())
            parts.append(f"{loc}: {d['msg']}" if loc else str(d["msg"]))
        return "; ".join(parts)
    return orjson.dumps(detail, default=str).decode()


def decode_body(endpoint: Endpoint, body: bytes, headers: Mapping[str, str]) -> Any:
    """The Python value of a complete (non-stream) success response."""
    schema = endpoint.item_schema
    kind = schema.get("type")
    if kind == "string":
        return body if schema.get("format") == "binary" else body.decode(_charset(headers))
    if kind == "file":
        content_type = headers.get("content-type", "")
        if schema.get("pil"):
            return _open_image(body, content_type)
        return save_download(body, headers.get("content-disposition"), content_type)
    if not body:
        return None
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        # Not JSON although the schema says so (a user-returned custom response): the text.
        return body.decode(_charset(headers), errors="replace")
    return decode_value(value, schema)


def decode_value(value: Any, schema: JSONSchema) -> Any:
    """Decode a parsed JSON value by its schema: tensors, data frames, nested containers."""
    kind = schema.get("type")
    if kind == "tensor" and value is not None:
        return _to_tensor(value, schema)
    if kind == "dataframe" and value is not None:
        pandas: Any = importlib.import_module("pandas")
        return pandas.DataFrame(value, columns=schema.get("columns"))
    if kind == "array" and isinstance(value, list) and isinstance(schema.get("items"), dict):
        items = schema["items"]
        return [decode_value(v, items) for v in value] if _needs_decoding(items) else value
    if kind == "object" and isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        extra = extra if isinstance(extra, dict) else {}
        if not any(map(_needs_decoding, props.values())) and not _needs_decoding(extra):
            return value
        return {k: decode_value(v, props.get(k, extra)) for k, v in value.items()}
    branches = [s for s in schema.get("anyOf", ()) if s.get("type") != "null"]
    if value is not None and len(branches) == 1:
        return decode_value(value, branches[0])
    return value


def _needs_decoding(schema: JSONSchema) -> bool:
    kind = schema.get("type")
    if kind in ("tensor", "dataframe"):
        return True
    if kind == "array":
        items = schema.get("items")
        return isinstance(items, dict) and _needs_decoding(items)
    if kind == "object":
        extra = schema.get("additionalProperties")
        return any(map(_needs_decoding, (schema.get("properties") or {}).values())) or (
            isinstance(extra, dict) and _needs_decoding(extra)
        )
    return any(_needs_decoding(s) for s in schema.get("anyOf", ()) if isinstance(s, dict))


def _to_tensor(value: Any, schema: JSONSchema) -> Any:
    dtype, shape, fmt = schema.get("dtype"), schema.get("shape"), schema.get("format")
    if fmt == "torch-tensor":
        torch: Any = importlib.import_module("torch")
        tensor = torch.tensor(value, dtype=getattr(torch, dtype) if dtype else None)
        return tensor.reshape(shape) if shape else tensor
    if fmt == "tf-tensor":
        tf: Any = importlib.import_module("tensorflow")
        return tf.constant(value, dtype=dtype, shape=shape)
    numpy: Any = importlib.import_module("numpy")
    array = numpy.asarray(value, dtype=dtype)
    return array.reshape(shape) if shape else array


def _charset(headers: Mapping[str, str]) -> str:
    message = email.message.Message()
    message["content-type"] = headers.get("content-type", "text/plain")
    charset = message.get_content_charset()
    return charset if charset else "utf-8"


def _open_image(body: bytes, content_type: str) -> Any:
    image: Any = importlib.import_module("PIL.Image")
    formats = (
        [content_type[6:].split(";")[0].upper()] if content_type.startswith("image/") else None
    )
    try:
        return image.open(io.BytesIO(body), formats=formats)
    except Exception:  # a content type PIL names differently (image/jpg): let PIL sniff it
        return image.open(io.BytesIO(body))


def save_download(body: bytes, content_disposition: str | None, content_type: str) -> Path:
    """Write a file response to a fresh temp folder under its server-side name; return the path."""
    filename = ""
    if content_disposition:
        message = email.message.Message()
        message["content-disposition"] = content_disposition
        filename = Path(message.get_filename() or "").name  # never a path outside the folder
    if filename in ("", ".", ".."):
        extension = mimetypes.guess_extension(content_type.split(";")[0].strip()) or ""
        filename = f"download{extension}"
    folder = Path(tempfile.mkdtemp(dir=_downloads()))
    path = folder / filename
    path.write_bytes(body)
    return path


def _downloads() -> Path:
    global _download_root
    if _download_root is None or not _download_root.is_dir():
        _download_root = Path(tempfile.mkdtemp(prefix="nbserve-client-"))
        atexit.register(shutil.rmtree, _download_root, ignore_errors=True)
    return _download_root
