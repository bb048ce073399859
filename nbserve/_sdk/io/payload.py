"""The two plain values the IO layer exchanges with the runtime: a response body to send
(`Payload`) and a file part that arrived (`UploadedFile`). Both are plain data so they cross
to a worker process and back unchanged."""

from __future__ import annotations

from dataclasses import dataclass, field

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
    """One file part of a multipart request, as the runtime parsed it."""

    filename: str
    content_type: str
    body: bytes

    def __repr__(self) -> str:
        # Never dump the body into logs or error messages.
        return f"UploadedFile(filename={self.filename!r}, content_type={self.content_type!r}, {len(self.body)} bytes)"
