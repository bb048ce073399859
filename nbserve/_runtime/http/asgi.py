"""Serving mounted ASGI apps from the Tornado runtime: the HTTP and lifespan halves of the ASGI
3.0 spec, with bodies streamed both ways.

No maintained bridge runs an ASGI app inside a Tornado server (the one published adapter is a
small unmaintained project), so this is that bridge, kept to what the spec requires:
- **HTTP**: the request body reaches the app chunk by chunk as Tornado reads it (a bounded
  queue, so a slow app slows the upload), and each `http.response.body` is written and
  flushed as it comes (streamed answers and SSE arrive as they are produced). A client that
  goes away is `http.disconnect` to the app.
- **Lifespan**: `startup` when the deployment starts, `shutdown` when it stops; an app that
  does not speak lifespan (it raises on the scope) is served all the same, as uvicorn does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

import tornado.iostream
import tornado.web

if TYPE_CHECKING:
    from nbserve._sdk.asgi import MountedApp

__all__ = ["AsgiHandler", "Lifespan", "match_mount"]

_log = logging.getLogger("nbserve.asgi")
_ASGI = {"version": "3.0", "spec_version": "2.3"}
_BODY_QUEUE = 16  # chunks buffered between Tornado and the app before reading pauses


def match_mount(mounts: list[MountedApp], path: str) -> MountedApp | None:
    """The mount that owns `path`: the longest mount path that is `path` or a parent of it."""
    best: MountedApp | None = None
    for mount in mounts:
        if (not mount.path or path == mount.path or path.startswith(mount.path + "/")) and (
            best is None or len(mount.path) > len(best.path)
        ):
            best = mount
    return best


@tornado.web.stream_request_body
class AsgiHandler(tornado.web.RequestHandler):
    """One request to a mounted ASGI app."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "DELETE", "PATCH", "PUT", "OPTIONS")

    def initialize(self, mount: MountedApp, root_path: str, state: dict[str, Any]) -> None:
        self.mount = mount
        self.root_path = root_path
        self.lifespan_state = state
        self._body: asyncio.Queue[bytes | None] = asyncio.Queue(_BODY_QUEUE)
        self._disconnected = asyncio.Event()
        self._started = False
        self._app_task: asyncio.Task[None] | None = None

    def set_default_headers(self) -> None:
        self.clear_header("Content-Type")  # the app says what it sends
        self.clear_header("Server")

    def check_xsrf_cookie(self) -> None:  # the app does its own (Tornado's XSRF is off anyway)
        return

    async def prepare(self) -> None:
        self._app_task = asyncio.ensure_future(self._run())

    async def data_received(self, chunk: bytes) -> None:
        await self._body.put(chunk)

    async def _finish_body(self) -> None:
        # Tornado runs this once the request body has been read. The response is finished
        # here, never earlier: finishing while the request is still being read makes Tornado
        # close the connection, which resets a keep-alive client's next request.
        await self._body.put(None)
        assert self._app_task is not None
        await self._app_task
        if not self._finished and not self._disconnected.is_set():
            self.finish()

    get = head = post = delete = patch = put = options = _finish_body

    def on_connection_close(self) -> None:
        self._disconnected.set()
        with contextlib.suppress(asyncio.QueueFull):
            self._body.put_nowait(None)

    def _scope(self) -> dict[str, Any]:
        request = self.request
        host, _, port = (request.host or "").partition(":")
        client = request.remote_ip or ""
        return {
            "type": "http",
            "asgi": _ASGI,
            "http_version": request.version.removeprefix("HTTP/"),
            "method": request.method,
            "scheme": request.protocol,
            "path": request.path,
            "raw_path": request.path.encode(),
            "query_string": request.query.encode("latin-1"),
            "root_path": self.root_path,
            "headers": [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in request.headers.get_all()
            ],
            "client": (client, 0),
            "server": (host, int(port) if port.isdigit() else 80),
            "state": dict(self.lifespan_state),
            "extensions": {},
        }

    async def _receive(self) -> dict[str, Any]:
        if self._disconnected.is_set():
            return {"type": "http.disconnect"}
        chunk = await self._body.get()
        if chunk is None:
            if self._disconnected.is_set():
                return {"type": "http.disconnect"}
            self._body.put_nowait(None)  # later calls: the body has ended
            if self._started:  # the response is under way: the next event is the disconnect
                await self._disconnected.wait()
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def _send(self, message: MutableMapping[str, Any]) -> None:
        kind = message["type"]
        if self._disconnected.is_set():
            return
        if kind == "http.response.start":
            self._started = True
            self.set_status(int(message["status"]))
            for name, value in message.get("headers", []):
                self.add_header(name.decode("latin-1"), value.decode("latin-1"))
        elif kind == "http.response.body":
            body = message.get("body", b"")
            if body:
                self.write(body)
            if message.get("more_body", False):
                with contextlib.suppress(tornado.iostream.StreamClosedError):
                    await self.flush()

    async def _run(self) -> None:
        try:
            await self.mount.app(self._scope(), self._receive, self._send)
        except Exception:
            _log.exception(
                "mounted app %s raised on %s %s",
                self.mount.name or self.mount.path or "/",
                self.request.method,
                self.request.path,
            )
            if not self._started and not self._finished:
                self.clear()
                self.set_status(500)
                self.set_header("Content-Type", "application/json")
                self.write(
                    b'{"error":"the mounted ASGI app failed; see the server log","detail":null}'
                )


class Lifespan:
    """Runs the ASGI lifespan protocol of each mounted app with the deployment."""

    def __init__(self, mounts: list[MountedApp]) -> None:
        self.mounts = mounts
        self.state: dict[str, Any] = {}
        self._runs: list[
            tuple[asyncio.Queue[dict[str, Any]], asyncio.Queue[dict[str, Any]], asyncio.Task[None]]
        ] = []

    async def startup(self) -> None:
        for mount in self.mounts:
            inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            scope = {"type": "lifespan", "asgi": _ASGI, "state": self.state}

            async def run(
                app: Any = mount.app, inbox: Any = inbox, outbox: Any = outbox, scope: Any = scope
            ) -> None:
                try:
                    await app(scope, inbox.get, outbox.put)
                except Exception as exc:  # an app without lifespan support raises here
                    await outbox.put({"type": "lifespan.unsupported", "message": repr(exc)})

            task = asyncio.ensure_future(run())
            await inbox.put({"type": "lifespan.startup"})
            answer = await outbox.get()
            if answer["type"] == "lifespan.startup.failed":
                msg = f"mounted app at {mount.path or '/'} failed to start: {answer.get('message', '')}"
                raise RuntimeError(msg)
            if answer["type"] == "lifespan.startup.complete":
                self._runs.append((inbox, outbox, task))

    async def shutdown(self) -> None:
        for inbox, outbox, task in reversed(self._runs):
            await inbox.put({"type": "lifespan.shutdown"})
            with contextlib.suppress(Exception):
                await asyncio.wait_for(outbox.get(), 30)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._runs.clear()
