"""Every error the server sends is one JSON object: `{"error": <message>, "detail": <any>}`.

This module maps exceptions to a status and that body, and holds `BaseHandler`, the Tornado
handler every route derives from, so that Tornado's own errors (405, a 400 for a broken request
line, an uncaught bug) also come out as JSON rather than Tornado's HTML page.

Which messages a client sees: an `NbserveError` carries the status its raiser chose (400
`InvalidArgument`, 404 `NotFound`, 503 `ServiceUnavailable`, ...), and its message and detail
are meant for the client, so they are sent as they are. Any other exception, and an
`NbserveError` with status 500, is a bug in the service: the client gets a generic message and
the request id, and the traceback goes to the service log under that id (BentoML hides 5xx
messages the same way, but gives the client nothing to quote, §2.5).

Except for the person who wrote the bug: when the server runs inside a notebook kernel (or
with `nbserve serve --debug`), the 500's body also carries the exception's type and message,
`"ValueError: X has 2 features, but ... (request id ...)"`, so the client and the request tester
show what went wrong without a trip to `%serve logs`. Never the traceback: frames, paths and
locals stay in the log. A served bento or `nbserve serve` keeps hiding it by default.

Every response carries `X-Request-ID`: the client's own when it sent a well-formed one (so a
gateway's id flows through), else a fresh 16-hex-digit id.
"""

from __future__ import annotations

import logging
import os
import random
import re
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
import tornado.web

from nbserve._runtime.http.auth import authorized
from nbserve.exceptions import NbserveError, WorkerError

if TYPE_CHECKING:
    from types import TracebackType

    from nbserve._runtime.server import Server

__all__ = [
    "DRAIN_LIMIT",
    "BaseHandler",
    "NotFoundHandler",
    "TooLargeHandler",
    "error_body",
    "error_for",
    "new_request_id",
    "reply_too_large",
]

_IDS = random.Random(os.urandom(16))
GENERIC_MESSAGE = "An unexpected error has occurred, please check the server log"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_REASONS = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    411: "Length required",
    413: "Request body too large",
    414: "URI too long",
    415: "Unsupported media type",
    429: "Too many requests",
    431: "Request header fields too large",
    500: GENERIC_MESSAGE,
    503: "Service unavailable",
    504: "Gateway timeout",
}


def new_request_id() -> str:
    # A seeded generator, not os.urandom: an id needs to be unique, not secret, and a syscall
    # per request showed up in the server's profile (0.5 ms each on a loaded machine).
    return f"{_IDS.getrandbits(64):016x}"


def error_body(message: str, detail: Any = None) -> bytes:
    """The JSON error object. `detail` may hold anything; what JSON cannot hold becomes a string."""
    try:
        return orjson.dumps({"error": message, "detail": detail}, default=str)
    except TypeError:  # e.g. a dict with non-string keys inside detail
        return orjson.dumps({"error": message, "detail": str(detail)})


_MAX_SHOWN = 2000
"""Characters of an exception's message a 500 shows (a message may hold a whole array's repr)."""


def error_for(
    exc: BaseException, request_id: str, *, expose: bool = False
) -> tuple[int, str, Any, bool]:
    """(status, message, detail, is_bug) for an exception raised while serving a request.

    `is_bug` means: log the traceback, and tell the client only the request id, or, with
    `expose` (a server in a notebook kernel, `--debug`), the exception's type and message too.
    """
    if isinstance(exc, NbserveError):
        status = exc.error_code if 400 <= exc.error_code <= 599 else 500
        if status != 500:
            return status, exc.message or _REASONS.get(status, "Error"), exc.detail, False
    elif isinstance(exc, tornado.web.HTTPError) and exc.status_code < 500:
        return exc.status_code, exc.reason or _REASONS.get(exc.status_code, "Error"), None, False
    if expose:
        return 500, *_exposed(exc, request_id), True
    message = f"{GENERIC_MESSAGE} (request id {request_id})"
    return 500, message, {"request_id": request_id}, True


def _exposed(exc: BaseException, request_id: str) -> tuple[str, dict[str, str]]:
    """`"ValueError: <message> (request id ...)"` and a detail with the parts; no traceback."""
    text = str(exc)
    if len(text) > _MAX_SHOWN:
        text = text[:_MAX_SHOWN] + f"... ({len(text) - _MAX_SHOWN} more characters in the log)"
    kind = type(exc).__name__
    # A worker's exception that could not be pickled arrives as a WorkerError whose text
    # already says "worker N: ValueError: ...".
    shown = text if isinstance(exc, WorkerError) else f"{kind}: {text}" if text else kind
    detail = {"request_id": request_id, "exception": kind, "message": text}
    return f"{shown} (request id {request_id})", detail


class BaseHandler(tornado.web.RequestHandler):
    """JSON errors, `X-Request-ID`, `Server` and (when the server has a token) authorization."""

    ALLOW: ClassVar[str] = "GET, HEAD"
    """The `Allow` header of a 405 from this route."""
    PUBLIC: ClassVar[bool] = False
    """True for the probes, which answer without a token (Kubernetes sends none)."""

    server: Server
    request_id: str

    def set_default_headers(self) -> None:
        # Called from RequestHandler.__init__ and again by send_error's clear(), so the id must
        # be computed once and kept: both responses of one request carry the same id.
        request_id = getattr(self, "request_id", None)
        if request_id is None:
            incoming = self.request.headers.get("X-Request-ID")
            if incoming is not None and _REQUEST_ID.fullmatch(incoming):
                request_id = incoming
            else:
                request_id = new_request_id()
            self.request_id = request_id
            self.server = self.application.server  # type: ignore[attr-defined]
        self._headers["Server"] = self.server.server_header
        self._headers["X-Request-ID"] = request_id

    def prepare(self) -> None:
        token = self.server.token
        if (
            token is not None
            and not self.PUBLIC
            and not authorized(self.request.headers.get("Authorization"), token)
        ):
            self.set_header("WWW-Authenticate", 'Bearer realm="nbserve"')
            self.reply_error(
                401,
                "Missing or wrong bearer token; send the header 'Authorization: Bearer <token>' with the token the service was started with",
            )

    def reply_error(self, status: int, message: str, detail: Any = None) -> None:
        """Send the JSON error object and finish the request."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        if status == 405:
            self.set_header("Allow", self.ALLOW)
        self.finish(error_body(message, detail))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Tornado's own errors (405, a failed body read, an uncaught exception) as JSON."""
        exc_info = kwargs.get("exc_info")
        if exc_info is not None and not isinstance(exc_info[1], tornado.web.HTTPError):
            status, message, detail, _ = error_for(
                exc_info[1], self.request_id, expose=self.server.debug
            )
        else:
            status = status_code
            message = _REASONS.get(status_code, self._reason)
            detail = None
            if status_code == 405:
                message = f"Method {self.request.method} is not allowed on {self.request.path}; use {self.ALLOW}"
            elif status_code >= 500:
                message = f"{message} (request id {self.request_id})"
                detail = {"request_id": self.request_id}
        self.reply_error(status, message, detail)

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Tornado would log to its own `tornado.application` logger; ours goes to the service
        # log with the request id, and an HTTPError (a 405, say) is not worth a line at all.
        if isinstance(value, tornado.web.HTTPError):
            return
        self.server.log.logger.error(
            "request %s: %s %s failed in the server",
            self.request_id,
            self.request.method,
            self.request.path,
            exc_info=(typ, value, tb) if typ is not None and value is not None else None,
        )


DRAIN_LIMIT = 1 << 30
"""Bodies up to this size are read and dropped before the 413; larger ones get it at once."""


def reply_too_large(handler: BaseHandler, limit: int) -> None:
    handler.reply_error(
        413,
        f"Request body too large: the limit is {limit} bytes; send a smaller body, or serve with a larger max_body_size",
        {"max_body_size": limit},
    )


@tornado.web.stream_request_body
class TooLargeHandler(BaseHandler):
    """Any request whose Content-Length is over `max_body_size`: a JSON 413, never a reset.

    Tornado's own check drops the connection and writes a bare "400 Bad Request". HTTP/1.1
    clients (httpx, requests) send the whole body before they read the reply, so a server that
    answers and closes early makes them see a reset instead of the 413: the body is read and
    dropped first (memory stays flat; loopback drains a GiB in about a second). Past
    `DRAIN_LIMIT`, or when the client asked `Expect: 100-continue` (it waits for a go-ahead
    before sending the body), the 413 goes out at once and the connection is closed.
    """

    ALLOW = "GET, HEAD, POST"

    def prepare(self) -> None:
        super().prepare()
        if self._finished:
            return
        length = int(self.request.headers["Content-Length"])
        connection = self.request.connection
        assert connection is not None
        connection.set_max_body_size(length)  # type: ignore[attr-defined]
        if length > DRAIN_LIMIT or self.request.headers.get("Expect", "").lower() == "100-continue":
            self.set_header("Connection", "close")
            reply_too_large(self, self.server.max_body_size)

    def data_received(self, chunk: bytes) -> None:
        pass  # dropped

    def _answer(self) -> None:
        reply_too_large(self, self.server.max_body_size)

    get = head = post = put = patch = delete = options = _answer


class NotFoundHandler(BaseHandler):
    """Any path the current service does not serve: 404, listing the routes it does serve."""

    ALLOW = "GET, HEAD, POST"

    def prepare(self) -> None:
        super().prepare()
        if self._finished:
            return
        routes = self.server.routes
        message = f"Not found: {self.request.method} {self.request.path}; this service serves " + (
            ", ".join(f"POST {r}" for r in routes) if routes else "no APIs"
        )
        self.reply_error(404, message, {"routes": routes})


def silence_tornado_access_log(handler: tornado.web.RequestHandler) -> None:
    """The Application's `log_function`: access lines at DEBUG on the service logger, if enabled.

    Tornado's default logs every request at INFO and 4xx at WARNING to `tornado.access`; with no
    handler configured, Python's last-resort handler would print those WARNINGs to stderr from
    the server thread, and per-request INFO logging is a cost BentoML pays (§11).
    """
    server: Server | None = getattr(handler.application, "server", None)
    if server is None:
        return
    logger = server.log.logger
    if logger.isEnabledFor(logging.DEBUG):
        request = handler.request
        logger.debug(
            "%s %s %s %d %.2fms (request %s)",
            request.remote_ip,
            request.method,
            request.uri,
            handler.get_status(),
            1000.0 * request.request_time(),
            getattr(handler, "request_id", "-"),
        )
