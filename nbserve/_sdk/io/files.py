"""File inputs (`Path`, `PIL.Image.Image`): multipart parts, or the raw body of a root input.

An `UploadedFile` is checked against the declared `ContentType` (`fnmatch`, so `image/*`
works) and written to `<temp_dir>/<fresh dir>/<original name>`, so the API sees the client's
file name and suffix. The request's `temp_dir` reaches the validator through pydantic's
validation context (`{"temp_dir": Path}`).

A string is never turned into a file: that would let a client name a path on the server, or
make the server fetch a URL for it (BentoML downloads URLs given for file fields; nbserve does
not). From Python (`InputSpec.validate`) a `Path`, bytes or PIL image are accepted as they are.
"""

from __future__ import annotations

import fnmatch
import io
import mimetypes
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from pydantic_core import PydanticCustomError, core_schema

from nbserve._sdk.io.errors import field_error
from nbserve._sdk.io.payload import UploadedFile

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
    from pydantic.json_schema import JsonSchemaMode, JsonSchemaValue

    from nbserve.validators import FileSchema

__all__ = [
    "ImageSchema",
    "file_core_schema",
    "file_json_schema",
    "media_type_of_upload",
    "save_upload",
]

_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
_MAX_NAME = 200


def _safe_name(filename: str, content_type: str) -> str:
    """The client's file name without any directory part or control characters."""
    name = _UNSAFE.sub("", filename.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    if name in ("", ".", ".."):
        name = "upload" + (mimetypes.guess_extension(content_type.split(";")[0].strip()) or "")
    if len(name) > _MAX_NAME:
        stem, dot, suffix = name.rpartition(".")
        name = (
            (stem[: _MAX_NAME - len(suffix) - 1] + dot + suffix)
            if dot and len(suffix) < 16
            else name[:_MAX_NAME]
        )
    return name


def save_upload(upload: UploadedFile, temp_dir: Path) -> Path:
    """Write an uploaded file under `temp_dir`, keeping its name (and so its suffix).

    A part the parser spilled to disk is moved there (a rename on one file system), not copied.
    """
    temp_dir.mkdir(parents=True, exist_ok=True)
    # One fresh directory per file: two parts with the same name never collide.
    path = Path(tempfile.mkdtemp(dir=temp_dir)) / _safe_name(upload.filename, upload.content_type)
    if upload.spilled is not None and temp_dir.resolve() in upload.spilled.resolve().parents:
        shutil.copyfile(upload.spilled, path)  # already saved once: that copy stays its own
    elif upload.spilled is not None:
        shutil.move(upload.spilled, path)
        upload.spilled = path  # read from here from now on
    else:
        path.write_bytes(upload.body)
    return path


def media_type_of_upload(upload: UploadedFile) -> str:
    """The part's media type; a missing or generic one is guessed from the file name."""
    media_type = upload.content_type.split(";")[0].strip().lower()
    if media_type in ("", "application/octet-stream"):
        media_type = mimetypes.guess_type(upload.filename)[0] or media_type
    return media_type


def _check_content_type(upload: UploadedFile, expected: str | None) -> None:
    if expected is None:
        return
    got = media_type_of_upload(upload)
    if not fnmatch.fnmatchcase(got, expected.lower()):
        template = "Invalid content type {got}, expected {expected}"
        raise field_error(template, kind="content_type", got=got or "(none)", expected=expected)


def _temp_dir(info: core_schema.ValidationInfo) -> Path:
    context = info.context
    temp_dir = context.get("temp_dir") if isinstance(context, dict) else None
    if temp_dir is None:
        msg = "nbserve: a file input needs a directory to be written to; pass temp_dir= (the request's Context.temp_dir)"
        raise RuntimeError(msg)
    return Path(temp_dir)


def _file_expected(info: core_schema.ValidationInfo) -> PydanticCustomError:
    return field_error(
        "Input should be a file sent as a multipart/form-data part (curl -F '{field}=@file.txt'); a string is never read as a server path or a URL",
        kind="file_expected",
        field=info.field_name or "file",
    )


def file_core_schema(spec: FileSchema) -> core_schema.CoreSchema:
    def validate(value: Any, info: core_schema.ValidationInfo) -> Path:
        if isinstance(value, PurePath):  # only Python callers can pass one; JSON cannot
            return Path(value)
        if isinstance(value, UploadedFile):
            _check_content_type(value, spec.content_type)
            return save_upload(value, _temp_dir(info))
        if isinstance(value, bytes | bytearray):
            upload = UploadedFile("", spec.content_type or "application/octet-stream", bytes(value))
            return save_upload(upload, _temp_dir(info))
        raise _file_expected(info)

    return core_schema.with_info_plain_validator_function(
        validate,
        serialization=core_schema.plain_serializer_function_ser_schema(
            # Inside a JSON value a file is its name: never a server path.
            lambda path: PurePath(path).name,
            when_used="json",
        ),
    )


def file_json_schema(spec: FileSchema, mode: JsonSchemaMode) -> JsonSchemaValue:
    if mode == "serialization":
        return {"type": "string", "format": "binary"}
    out: dict[str, Any] = {"type": "file", "format": spec.format}
    if spec.content_type is not None:
        out["content_type"] = spec.content_type
    return out


@dataclass(frozen=True)
class ImageSchema:
    """The pydantic type behind `PIL.Image.Image`: a file part opened with `Image.open`."""

    content_type: str | None = None

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.with_info_plain_validator_function(self._validate)

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        if handler.mode == "serialization":
            return {"type": "string", "format": "binary"}
        out: dict[str, Any] = {"type": "file", "format": "image", "pil": True}
        if self.content_type is not None:
            out["content_type"] = self.content_type
        return out

    def _validate(self, value: Any, info: core_schema.ValidationInfo) -> Any:
        from PIL import Image

        if isinstance(value, Image.Image):
            return value
        source: Any
        if isinstance(value, UploadedFile):
            _check_content_type(value, self.content_type)
            source = value.spilled if value.spilled is not None else io.BytesIO(value.body)
        elif isinstance(value, bytes | bytearray):
            source = io.BytesIO(value)
        elif isinstance(value, PurePath):  # Python callers only
            source = Path(value)
        else:
            raise _file_expected(info)
        try:
            image = Image.open(source)
            # Decode now, so a truncated upload is a 400 here rather than a 500 in the API.
            image.load()
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            template = "Input should be an image PIL can read: {reason}"
            raise field_error(template, kind="image_invalid", reason=str(exc)) from None
        return image
