"""Multipart uploads parsed once, as the body arrives, with large parts spilled to disk.

Tornado reads a whole body into memory (one chunk list, then one joined copy), parses a
multipart body into its own `request.files` (a third copy), and `handlers._parse_form` would
then parse it again (a fourth): a 90 MB file cost ~440 MB. `FormAPIHandler` instead streams
the body (`@stream_request_body`) into `python-multipart`'s parser (the one Starlette and
BentoML use): field values and small parts stay in memory, a part over `SPILL_SIZE` is written
to a temp file as its bytes arrive, and `UploadedFile.spilled` carries that file to the IO
layer, which moves it into the request's `temp_dir`. Peak memory is a few chunks, whatever
the upload's size.

A malformed body gets a 400 naming the parser's reason (a missing boundary, a body that
ends inside a part, a bad part header). The body-size limit holds as the bytes arrive, also
for a chunked upload.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import tornado.web
from python_multipart.multipart import MultipartParser, parse_options_header

from nbserve._runtime.http.api import APIHandler
from nbserve._runtime.http.errors import DRAIN_LIMIT
from nbserve._sdk.io import UploadedFile
from nbserve.exceptions import InvalidArgument

if TYPE_CHECKING:
    from nbserve._runtime.http.api import RequestContext
    from nbserve._sdk.method import APIMethod

__all__ = ["SPILL_SIZE", "ChunkedAPIHandler", "FormAPIHandler", "StreamedForm"]

SPILL_SIZE = 1 << 20
"""A file part larger than this goes to disk as it arrives."""
MAX_PARTS = 1000
_FIX = "let the HTTP client build the body (curl -F name=@file, httpx files=...)"


class StreamedForm:
    """One multipart body, fed chunk by chunk; `result()` gives fields and files at the end."""

    def __init__(self, content_type: str) -> None:
        _, params = parse_options_header(content_type)
        boundary = params.get(b"boundary")
        if not boundary:
            msg = f"Malformed multipart/form-data body: the Content-Type has no boundary; {_FIX}"
            raise InvalidArgument(msg)
        self.fields: dict[str, list[str]] = {}
        self.files: dict[str, list[UploadedFile]] = {}
        self._dir: Path | None = None
        self._parts = 0
        self._ended = False
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._chunks: list[bytes] = []
        self._size = 0
        self._spill: IO[bytes] | None = None
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value_data,
                "on_header_end": self._header_end,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
        )

    def feed(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except InvalidArgument:
            raise
        except Exception as exc:  # python-multipart's MultipartParseError and friends
            msg = f"Malformed multipart/form-data body: {exc}; {_FIX}"
            raise InvalidArgument(msg) from None

    def result(self) -> tuple[dict[str, list[str]], dict[str, list[UploadedFile]]]:
        self._parser.finalize()
        if not self._ended:
            msg = f"Malformed multipart/form-data body: it ends before its closing boundary (truncated?); {_FIX}"
            raise InvalidArgument(msg)
        return self.fields, self.files

    def cleanup(self) -> None:
        """Remove the spilled parts the request did not move into its temp_dir."""
        if self._spill is not None:
            self._spill.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    # --- parser callbacks -----------------------------------------------------------------------
    def _part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            msg = (
                f"Malformed multipart/form-data body: more than {MAX_PARTS} parts; send fewer parts"
            )
            raise InvalidArgument(msg)
        self._headers = {}
        self._chunks = []
        self._size = 0
        self._spill = None

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_name.strip().lower()] = self._header_value.strip()
        self._header_name = self._header_value = b""

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        piece = data[start:end]
        self._size += len(piece)
        if self._spill is not None:
            self._spill.write(piece)
            return
        self._chunks.append(piece)
        if self._size > SPILL_SIZE and b"filename" in self._headers.get(
            b"content-disposition", b""
        ):
            if self._dir is None:
                self._dir = Path(tempfile.mkdtemp(prefix="nbserve-upload-"))
            self._spill = tempfile.NamedTemporaryFile(dir=self._dir, delete=False)  # noqa: SIM115
            for chunk in self._chunks:
                self._spill.write(chunk)
            self._chunks = []

    def _part_end(self) -> None:
        disposition, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        if disposition != b"form-data" or b"name" not in params:
            msg = "Malformed multipart/form-data body: a part has no 'Content-Disposition: form-data; name=...' header"
            raise InvalidArgument(msg)
        name = params[b"name"].decode("utf-8", "replace")
        filename = params.get(b"filename")
        if filename is None:
            value = b"".join(self._chunks).decode("utf-8", "replace")
            self.fields.setdefault(name, []).append(value)
            return
        content_type = self._headers.get(b"content-type", b"application/octet-stream")
        if self._spill is not None:
            self._spill.close()
            upload = UploadedFile(
                filename.decode("utf-8", "replace"),
                content_type.decode("latin-1"),
                spilled=Path(self._spill.name),
            )
            self._spill = None
        else:
            body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
            upload = UploadedFile(
                filename.decode("utf-8", "replace"), content_type.decode("latin-1"), body
            )
        self._chunks = []
        self.files.setdefault(name, []).append(upload)

    def _end(self) -> None:
        self._ended = True


@tornado.web.stream_request_body
class FormAPIHandler(APIHandler):
    """An API request with a `multipart/form-data` body, parsed as it arrives."""

    def prepare(self) -> None:
        super().prepare()
        self._form: StreamedForm | None = None
        self._form_error: InvalidArgument | None = None
        self._received = 0
        self._too_large = False
        if self._finished:
            return
        connection = self.request.connection
        if connection is not None:  # the limit is ours to answer (413), not Tornado's to reset
            connection.set_max_body_size(DRAIN_LIMIT)  # type: ignore[attr-defined]
        try:
            self._form = StreamedForm(self.request.headers.get("Content-Type", ""))
        except InvalidArgument as exc:
            self._form_error = exc

    def data_received(self, chunk: bytes) -> None:
        self._received += len(chunk)
        if self._too_large or self._received > self.server.max_body_size:
            self._too_large = True  # the rest is read and dropped; the answer is a 413
            self._drop_form()
            return
        if self._form is None or self._form_error is not None:
            return
        try:
            self._form.feed(chunk)
        except InvalidArgument as exc:
            self._form_error = exc
            self._drop_form()

    def body(self) -> bytes | None:
        return None if self._too_large else b""

    def _decode(
        self,
        api: APIMethod[..., Any],
        body: bytes,
        ctx: RequestContext,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        if self._form_error is not None:
            raise self._form_error
        assert self._form is not None
        fields, files = self._form.result()
        return api.input.from_form(fields, files, ctx.temp_dir)

    def _drop_form(self) -> None:
        if self._form is not None:
            self._form.cleanup()

    def on_finish(self) -> None:
        self._drop_form()

    def on_connection_close(self) -> None:
        super().on_connection_close()
        self._drop_form()


@tornado.web.stream_request_body
class ChunkedAPIHandler(APIHandler):
    """An API request with a chunked body (no Content-Length): counted as it arrives, since
    its size is only known at the end; past the limit it is dropped and answered with 413."""

    def prepare(self) -> None:
        super().prepare()
        self._chunks: list[bytes] = []
        self._size = 0
        self._too_large = False
        connection = self.request.connection
        if connection is not None:  # Tornado would drop the connection at its own limit
            connection.set_max_body_size(DRAIN_LIMIT)  # type: ignore[attr-defined]

    def data_received(self, chunk: bytes) -> None:
        if self._too_large:
            return
        self._size += len(chunk)
        if self._size > self.server.max_body_size:
            self._too_large = True
            self._chunks.clear()
            return
        self._chunks.append(chunk)

    def body(self) -> bytes | None:
        if self._too_large:
            return None
        return self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
