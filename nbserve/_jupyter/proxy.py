"""`{base_url}nbserve/services/<name>/...`: the browser reaches a kernel's service through Jupyter.

On JupyterHub, Binder, or a remote server only Jupyter's own port is reachable, so the service is
proxied here. What this proxy does, and why (jupyter.md §2.1-2.2 lists jupyter-server-proxy's
lessons):

- **Auth first.** The user must be logged in to Jupyter (cookie or token), checked in `prepare()`
  before a byte of the body is read or the service contacted; Jupyter's XSRF check stays on for
  cookie-authenticated unsafe methods (jupyter-server-proxy turns it off).
- **Only the named service.** The upstream host and port come from the service's discovery file,
  never from the request; a path with a `..` segment (encoded or not), an empty segment (`//`)
  or a scheme (`http://`) is refused with 400.
- **Streams both ways.** The request body goes upstream as it arrives (`stream_request_body`);
  the response is passed on as it comes (each chunk flushed), so chunked streams and SSE reach
  the browser item by item, not at the end.
- **Headers.** Hop-by-hop headers are dropped both ways; Jupyter's `Cookie` and `Authorization`
  never reach the service; the service's bearer token is added here, so the browser never holds
  it; `X-Forwarded-For/-Proto/-Host/-Prefix` tell the service where it is mounted.
- Each proxied request counts as user activity, so a demo in use is not culled on Binder.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import urllib.parse
from typing import TYPE_CHECKING, Any, cast

import tornado.httpclient
import tornado.httputil
import tornado.iostream
import tornado.queues
import tornado.simple_httpclient
import tornado.web
from jupyter_server.base.handlers import APIHandler

from nbserve._jupyter import services
from nbserve._runtime.http.admin import ADMIN_HEADER

if TYPE_CHECKING:
    from pathlib import Path

    from nbserve._jupyter.config import NbServe

__all__ = ["ProxyHandler", "make_client", "unsafe_path"]

# RFC 9110 §7.6.1, plus the ones proxies conventionally also drop.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Jupyter's credentials are for Jupyter; the service gets its own token instead.
_NOT_FORWARDED = HOP_BY_HOP | {
    "host",
    "cookie",
    "authorization",
    "x-xsrftoken",
    ADMIN_HEADER.lower(),
}
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def unsafe_path(path: str) -> str | None:
    """Why `path` (the part after the service name) may not be proxied, or None when it may."""
    decoded = urllib.parse.unquote(path)
    if "\\" in decoded or "\x00" in decoded:
        return "backslashes and NUL bytes are not allowed in a proxied path"
    segments = decoded.split("/")[1:]
    if any(seg in (".", "..") for seg in segments):
        return "'.' and '..' segments would leave the service"
    if any(seg == "" for seg in segments[:-1]):
        return "an empty segment ('//') would make the rest look like another host"
    if segments and _SCHEME.match(segments[0]):
        return "an absolute URL (scheme://...) would name another host"
    return None


def make_client(nbserve: NbServe) -> tornado.httpclient.AsyncHTTPClient:
    """The proxy's own HTTP client: large streamed bodies, no queue shared with Jupyter's."""
    return tornado.simple_httpclient.SimpleAsyncHTTPClient(
        force_instance=True, max_clients=256, max_body_size=nbserve.max_body_size
    )


@tornado.web.stream_request_body
class ProxyHandler(APIHandler):
    """Every method of `nbserve/services/<name>/<path>`, proxied to the service."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
    # OPTIONS stays APIHandler's (CORS preflights carry no credentials, so are not proxied).

    nbserve: NbServe
    directory: Path

    @property
    def content_security_policy(self) -> str:
        # A proxied page is the service's own (its self-contained docs page runs inline script
        # and style); APIHandler's "default-src 'none'" is for JSON answers. Jupyter's page policy
        # (frame-ancestors 'self') still keeps it out of other sites' frames, and a service's own
        # Content-Security-Policy header, if it sends one, replaces this one.
        policy: str = super(APIHandler, self).content_security_policy
        return policy

    def initialize(
        self, nbserve: NbServe, directory: Path, client: tornado.httpclient.AsyncHTTPClient
    ) -> None:
        self.nbserve = nbserve
        self.directory = directory
        self.client = client
        self._body: tornado.queues.Queue[bytes | None] | None = None
        self._upstream: asyncio.Future[tornado.httpclient.HTTPResponse] | None = None
        self._status: tuple[int, str] | None = None
        self._upstream_headers = tornado.httputil.HTTPHeaders()
        self._content_type = "application/octet-stream"
        self._headers_sent = False
        self._client_gone = False
        self._mount = ""
        self._upstream_base = ""

    async def prepare(self) -> None:  # type: ignore[override]
        await super().prepare()  # auth, XSRF, origin: raises 403 without a user
        if self.request.method == "OPTIONS":  # a CORS preflight: Jupyter's own answer, no proxying
            return
        if self.current_user is None:  # whatever allow_unauthenticated_access says
            raise tornado.web.HTTPError(403)
        name, rest = self._split_path()
        if rest is None:  # `.../services/<name>`: the service's relative links need the slash
            self.redirect(self.request.path + "/" + _query(self.request))
            return
        reason = unsafe_path(rest)
        if reason is not None:
            raise tornado.web.HTTPError(400, f"refused to proxy {rest!r}: {reason}")
        service = services.find(self.directory, name)
        if service is None:
            raise tornado.web.HTTPError(
                404,
                f"no live nbserve service named {name!r}; GET nbserve/api/services lists the ones there are",
            )
        self.update_api_activity()
        self._start(service, name, rest)

    def _split_path(self) -> tuple[str, str | None]:
        prefix = self.base_url + "nbserve/services/"
        tail = self.request.path[len(prefix) :]
        raw_name, slash, rest = tail.partition("/")
        return urllib.parse.unquote(raw_name), (slash + rest if slash else None)

    def _start(self, service: services.ServiceRecord, name: str, path: str) -> None:
        request = self.request
        headers = tornado.httputil.HTTPHeaders()
        connection_listed = {
            h.strip().lower() for h in request.headers.get("Connection", "").split(",")
        }
        for key, value in request.headers.get_all():
            lowered = key.lower()
            if lowered not in _NOT_FORWARDED and lowered not in connection_listed:
                headers.add(key, value)
        if service.token is not None:
            headers["Authorization"] = f"Bearer {service.token}"
        forwarded_for = request.headers.get("X-Forwarded-For")
        remote = request.remote_ip or ""
        headers["X-Forwarded-For"] = f"{forwarded_for}, {remote}" if forwarded_for else remote
        headers["X-Forwarded-Proto"] = request.protocol
        headers["X-Forwarded-Host"] = request.host
        self._mount = f"{self.base_url}nbserve/services/{urllib.parse.quote(name, safe='')}"
        self._upstream_base = service.base
        headers["X-Forwarded-Prefix"] = self._mount
        has_body = "Content-Length" in request.headers or "Transfer-Encoding" in request.headers
        body_producer = None
        if has_body and request.headers.get("Content-Length") != "0":
            queue: tornado.queues.Queue[bytes | None] = tornado.queues.Queue(maxsize=8)
            self._body = queue

            async def produce(write: Any) -> None:
                while (chunk := await queue.get()) is not None:
                    await write(chunk)

            body_producer = cast("Any", produce)  # tornado types it as returning a Future
        upstream = tornado.httpclient.HTTPRequest(
            service.base + path + _query(request),
            method=request.method or "GET",
            headers=headers,
            body=b"" if has_body and body_producer is None else None,
            body_producer=body_producer,
            follow_redirects=False,
            decompress_response=False,  # pass the bytes on as they are, Content-Encoding and all
            allow_nonstandard_methods=True,
            connect_timeout=self.nbserve.connect_timeout,
            # 0 is tornado's "no limit"; None would mean its 20 s default, cutting long streams.
            request_timeout=self.nbserve.request_timeout,
            header_callback=self._on_header,
            streaming_callback=self._on_chunk,
        )
        self._upstream = asyncio.ensure_future(self.client.fetch(upstream, raise_error=False))

    # --- request body -> upstream -----------------------------------------------------------
    async def data_received(self, chunk: bytes) -> None:
        if self._body is not None:
            await self._body.put(chunk)  # waits while upstream is slower: flow control

    # --- upstream response -> browser -------------------------------------------------------
    def _on_header(self, line: str) -> None:
        if self._status is None:
            start = tornado.httputil.parse_response_start_line(line.strip())
            self._status = (start.code, start.reason)
            return
        if line.strip():
            self._upstream_headers.parse_line(line)
            return
        if self._status[0] == 100:  # an interim "100 Continue": the real response follows
            self._status, self._upstream_headers = None, tornado.httputil.HTTPHeaders()
            return
        self._send_headers()

    def _send_headers(self) -> None:
        assert self._status is not None
        code, reason = self._status
        self.set_status(code, reason)
        listed = {
            h.strip().lower() for h in self._upstream_headers.get("Connection", "").split(",")
        }
        for key in ("Content-Type", "Server"):
            self.clear_header(key)
        for key, value in self._upstream_headers.get_all():
            lowered = key.lower()
            if lowered in HOP_BY_HOP or lowered in listed:
                continue
            if lowered == "content-type":
                self._content_type = value
            elif lowered == "location":
                value = self._rewrite_location(value)
            if lowered in ("set-cookie", "www-authenticate", "link", "vary"):
                self.add_header(key, value)
            else:
                self.set_header(key, value)
        self._headers_sent = True

    def _rewrite_location(self, location: str) -> str:
        """A redirect the service sends (e.g. `/v1` → `/v1/`) must stay under the proxy."""
        if location.startswith(self._upstream_base + "/"):
            location = location[len(self._upstream_base) :]
        if location.startswith("/") and not location.startswith("//"):
            return self._mount + location
        return location  # relative, or another site's: the browser resolves it as sent

    def _on_chunk(self, chunk: bytes) -> None:
        connection: Any = self.request.connection  # an HTTP1Connection: it has a stream
        if self._client_gone or connection.stream.closed():
            # The browser left. Raising here drops the upstream connection, so the service sees
            # the disconnect and stops the work (a long stream nobody reads any more);
            # HTTPInputError is the one exception tornado's client passes on without logging.
            self._client_gone = True
            msg = "the client closed the proxied connection"
            raise tornado.httputil.HTTPInputError(msg)
        self.write(chunk)
        self.flush()  # each item as it comes: chunked streams and SSE stay live

    def on_connection_close(self) -> None:
        self._client_gone = True
        if self._body is not None:
            with contextlib.suppress(tornado.queues.QueueFull):
                self._body.put_nowait(None)  # end the upstream body; the service sees the close

    async def _relay(self) -> None:
        if self._body is not None:
            await self._body.put(None)  # the whole request body has arrived
        assert self._upstream is not None
        try:
            response = await self._upstream
            error = response.error if response.code == 599 else None
        except Exception as exc:  # connection refused or reset, timeout, or our own abort
            error = exc
        if self._client_gone:
            return  # nobody to answer
        if not self._headers_sent:
            if self._status is None or error is not None:
                raise tornado.web.HTTPError(
                    502,
                    f"the nbserve service did not answer ({type(error).__name__}: {error}); is its kernel busy or gone?",
                )
            self._send_headers()
        elif error is not None:
            # Mid-stream: the status is long sent; end the response without its last chunk so
            # the browser sees a broken stream rather than a complete one.
            connection: Any = self.request.connection
            connection.close()
            return
        if not self._client_gone:
            self.finish(set_content_type=self._content_type)

    def finish(self, *args: Any, **kwargs: Any) -> Any:
        if self._headers_sent:
            kwargs.setdefault("set_content_type", self._content_type)
        return super().finish(*args, **kwargs)

    @tornado.web.authenticated
    async def get(self, **_: str | None) -> None:
        await self._relay()

    @tornado.web.authenticated
    async def head(self, **_: str | None) -> None:
        await self._relay()

    @tornado.web.authenticated
    async def post(self, **_: str | None) -> None:
        await self._relay()

    @tornado.web.authenticated
    async def put(self, **_: str | None) -> None:
        await self._relay()

    @tornado.web.authenticated
    async def patch(self, **_: str | None) -> None:
        await self._relay()

    @tornado.web.authenticated
    async def delete(self, **_: str | None) -> None:
        await self._relay()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if self._headers_sent:  # mid-stream: the status is gone; just end the response
            return
        super().write_error(status_code, **kwargs)


def _query(request: tornado.httputil.HTTPServerRequest) -> str:
    return f"?{request.query}" if request.query else ""
