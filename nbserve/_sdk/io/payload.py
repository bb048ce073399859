"""The two plain values the IO layer exchanges with the runtime: a response body to send
(`Payload`) and a file part that arrived (`UploadedFile`). Both are plain data so they cross
to a worker process and back unchanged."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Payload", "UploadedFile"]


@dataclass(slots=True)
class Payload:
    """An encoded response: the bytes, their `Content-Type`, and any extra headers
    (`Content-Disposition` for files)."""

    body: bytes
    media_type: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class UploadedFile:
    """One file part of a multipart request, as the runtime parsed it: its bytes in `body`,
    or, for a large part the parser spilled to disk, in the file at `spilled` (then `body`
    is empty; the file is the request's to move or delete)."""

    filename: str
    content_type: str
    body: bytes = b""
    spilled: Path | None = None

    @property
    def size(self) -> int:
        return self.spilled.stat().st_size if self.spilled is not None else len(self.body)

    def read_bytes(self) -> bytes:
        return self.spilled.read_bytes() if self.spilled is not None else self.body

    def __repr__(self) -> str:
        # Never dump the body into logs or error messages.
        return f"UploadedFile(filename={self.filename!r}, content_type={self.content_type!r}, {self.size} bytes)"
