"""Errors found below the handlers, in the HTTP/1.1 framing, answered with the JSON error shape.

Tornado answers a request it cannot parse (a bad Content-Length, both Content-Length and
Transfer-Encoding, a bad query string, a chunked body past the limit) with a bare
`HTTP/1.1 400 Bad Request` and no body, and logs the reason to `tornado.general`; headers
longer than `max_header_size` get no answer at all, the connection is just closed. None of
those reach a `RequestHandler`, so `errors.BaseHandler` cannot shape them.

Here the connection's stream is hooked at two points: a write of Tornado's bare 400 becomes a
JSON 400 (413 when the reason is a body over the limit) with the reason Tornado found, and a
close caused by over-long headers first sends a JSON 414 (the request line alone is too long)
or 431.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import tornado.iostream

from nbserve._runtime.http.errors import error_body

__all__ = ["ProtocolErrors", "error_response"]

_TORNADO_400 = b"HTTP/1.1 400 Bad Request\r\n\r\n"
_TOO_LARGE = ("chunked body too large", "Body too long", "Content-Length too long")
_REASONS = {
    400: "Bad Request",
    413: "Payload Too Large",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
}


def error_response(status: int, message: str, detail: Any = None) -> bytes:
    """A complete `Connection: close` HTTP/1.1 response carrying the JSON error object."""
    body = error_body(message, detail)
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class ProtocolErrors:
    """Installs the hooks on each new connection's stream."""

    def __init__(self, max_header_size: int, logger: logging.Logger) -> None:
        self.max_header_size = max_header_size
        self.logger = logger

    def hook(
        self,
        stream: tornado.iostream.IOStream,
        reading_headers: Callable[[], bool],
    ) -> None:
        write = stream.write
        close = stream.close

        def json_write(data: bytes | memoryview) -> Any:
            if data == _TORNADO_400:
                # Tornado writes its bare 400 inside `except HTTPInputError as e:`, so the
                # reason is the exception being handled right now.
                exc = sys.exc_info()[1]
                data = self._bad_request(None if exc is None else str(exc))
            return write(data)

        def answering_close(exc_info: Any = False) -> None:
            exc = exc_info[1] if isinstance(exc_info, tuple) else exc_info
            if (
                isinstance(exc, tornado.iostream.UnsatisfiableReadError)
                and reading_headers()
                and not stream.closed()
            ):
                self._headers_too_long(stream)
            close(exc_info)

        stream.write = json_write  # type: ignore[method-assign]
        stream.close = answering_close  # type: ignore[method-assign]

    def _bad_request(self, reason: str | None) -> bytes:
        if reason is not None and reason.startswith(_TOO_LARGE):
            return error_response(
                413,
                f"Request body too large: {reason}; send a smaller body, or serve with a larger max_body_size",
                {"reason": reason},
            )
        return error_response(
            400,
            f"Malformed HTTP request: {reason or 'unparsable'}; send a well-formed HTTP/1.1 request (let the HTTP client build it)",
            {"reason": reason},
        )

    def _headers_too_long(self, stream: tornado.iostream.IOStream) -> None:
        limit = self.max_header_size
        # What Tornado read and refused (a private attribute: without it, 431 is the answer).
        received = bytes(getattr(stream, "_read_buffer", b"\n")[: limit + 1])
        if b"\n" not in received:
            response = error_response(
                414,
                f"URI too long: the request line is over {limit} bytes; send long inputs in the body (POST JSON) rather than the URL",
                {"max_header_size": limit},
            )
        else:
            response = error_response(
                431,
                f"Request header fields too large: over {limit} bytes of headers; send fewer or shorter headers (large values belong in the body)",
                {"max_header_size": limit},
            )
        sock = stream.socket
        try:
            # Small enough for the socket's buffer: sent now, without the loop. Then take in
            # what the client already sent, so the close is a FIN, not a reset that could make
            # it drop the answer unread.
            sock.send(response)
            for _ in range(64):
                if not sock.recv(65536):
                    break
        except OSError:
            pass
