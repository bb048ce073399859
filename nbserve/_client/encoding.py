"""Request bodies from call arguments, driven by the API's input schema (reference §2.2, §3.2).

- Keyword APIs: one JSON object keyed by parameter name.
- Root inputs (`input.root_input`): the body *is* the value: `str` as text/plain, `bytes` as
  octet-stream, a file (Path, file object, PIL image) as its bytes with a guessed type, anything
  else as a JSON value.
- Any file field (`type: "file"`, possibly inside an array or `anyOf`): multipart/form-data with
  files as parts under the field name (repeated for lists) and every other field as
  `json.dumps(value)`, which is what BentoML's server (and nbserve's) expects.

Values are encoded by schema where the wire form depends on it (a DataFrame's `orient`); everything
else goes through orjson with a `default` hook for numpy, pandas, torch and pydantic values.
Heavy libraries are never imported here: a value can only be a DataFrame if pandas is loaded.
"""

from __future__ import annotations

import enum
import io
import json
import mimetypes
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path, PurePath
from typing import Any

import orjson
from pydantic import BaseModel

from nbserve._client.endpoint import Endpoint, JSONSchema, bind_arguments, is_file_schema

__all__ = ["RequestBody", "build_body", "dumps", "is_file_schema"]

FilePart = tuple[str, bytes, str]  # (filename, content, content type)
_ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


@dataclass
class RequestBody:
    """What `httpx.Client.build_request` needs besides the method and URL."""

    content: bytes | None = None
    data: dict[str, str | list[str]] | None = None
    files: list[tuple[str, FilePart]] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def build_body(endpoint: Endpoint, args: Sequence[Any], kwargs: Mapping[str, Any]) -> RequestBody:
    """Encode one call's arguments for `endpoint`; `TypeError` names a bad argument."""
    if endpoint.is_root and not endpoint.properties:
        return _root_body(endpoint, args, kwargs)
    if endpoint.is_root:
        # A root model (`def f(self, item: Item, /)`): the body is the object itself; accept it
        # as the one positional argument or as its fields by keyword.
        if len(args) > 1 or (args and kwargs):
            msg = f"{endpoint.name}() takes one positional argument (the {endpoint.input.get('title', 'input')} object) or its fields as keywords, got {len(args)} positional and {len(kwargs)} keyword arguments"
            raise TypeError(msg)
        value = args[0] if args else bind_arguments(endpoint, (), kwargs)
        return _json_body(endpoint, _encode(value, endpoint.input))
    bound = bind_arguments(endpoint, args, kwargs)
    if endpoint.file_fields:
        return _multipart_body(endpoint, bound)
    props = endpoint.properties
    return _json_body(endpoint, {k: _encode(v, props[k]) for k, v in bound.items()})


def dumps(value: Any) -> bytes:
    """JSON bytes for `value`; numpy, pandas, torch, pydantic and paths included."""
    try:
        return orjson.dumps(value, default=_default, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:
        # orjson refuses what stdlib json accepts (ints over 64 bits, some subclasses); json
        # re-raises `_default`'s TypeError, which names the type, when it fails too.
        return json.dumps(value, default=_default).encode()


def _json_body(endpoint: Endpoint, value: Any) -> RequestBody:
    try:
        content = dumps(value)
    except TypeError as exc:
        msg = f"Cannot encode the arguments of {endpoint.name}() as JSON: {exc}"
        raise TypeError(msg) from None
    return RequestBody(content=content, headers={"Content-Type": "application/json"})


def _root_body(endpoint: Endpoint, args: Sequence[Any], kwargs: Mapping[str, Any]) -> RequestBody:
    if kwargs or len(args) != 1:
        names = f" ({', '.join(map(repr, kwargs))})" if kwargs else ""
        msg = f"{endpoint.name}() takes exactly one positional argument (the request body), got {len(args)} positional and {len(kwargs)} keyword arguments{names}"
        raise TypeError(msg)
    value = args[0]
    if endpoint.input.get("type") == "file" and isinstance(value, str) and _is_url(value):
        # The server downloads a URL given for a root file input (reference §2.2).
        return RequestBody(content=value.encode(), headers={"Content-Type": "text/plain"})
    if endpoint.input.get("type") == "file" or _is_file_value(value):
        _, content, content_type = _file_part(value, endpoint.name, "value")
        return RequestBody(content=content, headers={"Content-Type": content_type})
    if isinstance(value, str):
        return RequestBody(
            content=value.encode(), headers={"Content-Type": "text/plain; charset=utf-8"}
        )
    if isinstance(value, bytes | bytearray | memoryview):
        return RequestBody(
            content=bytes(value), headers={"Content-Type": "application/octet-stream"}
        )
    return _json_body(endpoint, _encode(value, endpoint.input))


def _multipart_body(endpoint: Endpoint, bound: Mapping[str, Any]) -> RequestBody:
    data: dict[str, str | list[str]] = {}
    files: list[tuple[str, FilePart]] = []
    for name, value in bound.items():
        if name not in endpoint.file_fields:
            try:
                data[name] = dumps(_encode(value, endpoint.properties[name])).decode()
            except TypeError as exc:
                msg = f"Cannot encode argument {name!r} of {endpoint.name}() as JSON: {exc}"
                raise TypeError(msg) from None
            continue
        if value is None:
            continue  # an optional file left out
        values = value if isinstance(value, list | tuple) else [value]
        urls = [v for v in values if isinstance(v, str) and _is_url(v)]
        if urls:
            data[name] = urls if len(urls) > 1 else urls[0]
        files.extend(
            (name, _file_part(v, endpoint.name, name))
            for v in values
            if not (isinstance(v, str) and _is_url(v))
        )
    # httpx sets the multipart Content-Type (with its boundary) itself.
    return RequestBody(data=data, files=files)


def _is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def _is_file_value(value: Any) -> bool:
    return (
        isinstance(value, PurePath)
        or _is_pil_image(value)
        or callable(getattr(value, "read", None))
    )


def _is_pil_image(value: Any) -> bool:
    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(value, pil.Image)


def _file_part(value: Any, api: str, name: str) -> FilePart:
    """`(filename, bytes, content type)` for a Path, path string, bytes, file object or PIL image."""
    if isinstance(value, str | PurePath):
        path = Path(value)
        try:
            content = path.read_bytes()
        except OSError as exc:
            msg = f"Argument {name!r} of {api}() names the file {str(path)!r}, which cannot be read ({exc.strerror or exc}); pass an existing path, bytes, a file object or a PIL image"
            raise TypeError(msg) from None
        return path.name, content, _guess_type(path.name)
    if isinstance(value, bytes | bytearray | memoryview):
        return name, bytes(value), "application/octet-stream"
    if _is_pil_image(value):
        fmt = (value.format or "PNG").upper()
        buffer = io.BytesIO()
        value.save(buffer, format=fmt)
        filename = Path(getattr(value, "filename", "") or f"{name}.{fmt.lower()}").name
        return filename, buffer.getvalue(), f"image/{fmt.lower()}"
    if callable(getattr(value, "read", None)):
        content = value.read()
        if isinstance(content, str):
            content = content.encode()
        raw_name = getattr(value, "name", None)
        filename = Path(raw_name).name if isinstance(raw_name, str) and raw_name else name
        return filename, bytes(content), _guess_type(filename)
    msg = f"Argument {name!r} of {api}() is a file field, got {type(value).__name__}; pass a pathlib.Path, a path string, bytes, a binary file object or a PIL image"
    raise TypeError(msg)


def _guess_type(filename: str) -> str:
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


def _encode(value: Any, schema: JSONSchema) -> Any:
    """The JSON-ready form of `value` where the schema decides it; otherwise `value` itself."""
    kind = schema.get("type")
    if kind == "tensor":
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(value, torch.Tensor):
            return value.detach().cpu().tolist()
        return value
    if kind == "dataframe":
        pandas = sys.modules.get("pandas")
        if pandas is not None and isinstance(value, pandas.DataFrame):
            orient = "list" if schema.get("orient") == "columns" else "records"
            return value.to_dict(orient=orient)
        return value
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if (
        kind == "array"
        and isinstance(value, list | tuple)
        and isinstance(schema.get("items"), dict)
    ):
        return [_encode(v, schema["items"]) for v in value]
    if kind == "object" and isinstance(value, Mapping):
        props = schema.get("properties") or {}
        return {k: _encode(v, props.get(k, {})) for k, v in value.items()}
    branches = [s for s in schema.get("anyOf", ()) if s.get("type") != "null"]
    if value is not None and len(branches) == 1:
        return _encode(value, branches[0])
    return value


def _default(value: Any) -> Any:
    """orjson's fallback: the JSON form of values it does not know natively."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    module = type(value).__module__.partition(".")[0]
    if module in ("numpy", "torch"):
        return value.tolist() if hasattr(value, "tolist") else value.item()
    if module == "pandas":
        if hasattr(value, "to_dict") and hasattr(value, "columns"):
            return value.to_dict(orient="records")
        if hasattr(value, "tolist"):
            return value.tolist()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, PurePath | Decimal):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode()  # pydantic's JSON form of bytes
        except UnicodeDecodeError:
            msg = "bytes that are not UTF-8 cannot travel inside JSON; declare the parameter as a file (pathlib.Path) or make it the API's only, positional-only parameter"
            raise TypeError(msg) from None
    msg = f"{type(value).__module__}.{type(value).__qualname__} is not JSON serializable; pass JSON values, numpy arrays, DataFrames, tensors or pydantic models"
    raise TypeError(msg)
