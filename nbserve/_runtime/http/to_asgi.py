"""`Service.to_asgi()`: a whole service as one ASGI app (BentoML's `Service.to_asgi()`).

The service keeps running on nbserve's own runtime (its Tornado server on a private loopback
port, with workers, batching and traffic limits exactly as `nbserve serve` has them), and the
ASGI app relays each request to it, streaming the body both ways. So one code path serves
every request, whether it arrives through Tornado or through an ASGI server (uvicorn,
hypercorn) or FastAPI's `TestClient`; the relay costs one loopback hop.

The server starts on the lifespan's `startup` (or on the first request when the ASGI server
sends no lifespan events) and stops on `shutdown`, or on `close()` for an app mounted inside
another one (Starlette does not pass lifespan events to mounted apps).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from nbserve._runtime.handle import ServiceHandle
    from nbserve._sdk.service import Service

__all__ = ["ServiceASGI"]

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
# Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection, not the message.
_HOP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade", b"host"}
)


class ServiceASGI:
    """The ASGI app of `service`; see the module docstring."""

    def __init__(self, service: Service[Any]) -> None:
        self.service = service
        self._handle: ServiceHandle | None = None
        self._lock = threading.Lock()

    # --- the served service -------------------------------------------------------------------
    def _start(self) -> ServiceHandle:
        with self._lock:
            if self._handle is None:
                from nbserve._runtime.handle import serve

                self._handle = serve(self.service, host="127.0.0.1", port=0).wait_ready(60)
            return self._handle

    def close(self) -> None:
        """Stop the service. For an app mounted inside another (a Starlette `Mount`), which
        receives no lifespan events of its own: call it from the outer app's shutdown."""
        self._stop()

    def _stop(self) -> None:
        with self._lock:
            handle, self._handle = self._handle, None
        if handle is not None:
            handle.stop()

    async def _origin(self) -> str:
        handle = self._handle
        if handle is None:
            handle = await asyncio.to_thread(self._start)
        return f"http://127.0.0.1:{handle.port}"

    # --- ASGI ---------------------------------------------------------------------------------
    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        else:
            msg = f"{self.service.name}.to_asgi() serves HTTP; got a {scope['type']!r} connection"
            raise RuntimeError(msg)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await asyncio.to_thread(self._start)
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.to_thread(self._stop)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        import httpx

        origin = await self._origin()
        # Mounted under a root path (a Starlette Mount, uvicorn --root-path): the service's
        # routes are below it. ASGI servers differ on whether `path` includes it.
        path, root = scope["path"], scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP]

        async def body() -> AsyncIterator[bytes]:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                if chunk:
                    yield chunk
                if not message.get("more_body", False):
                    return

        # A client per request: an httpx client belongs to the loop that made it, and an ASGI
        # server may call from several loops (FastAPI's TestClient makes one per `with`).
        async with httpx.AsyncClient(base_url=origin, timeout=None) as client:
            await self._relay(client, scope, path, headers, body(), send)

    async def _relay(
        self,
        client: httpx.AsyncClient,
        scope: MutableMapping[str, Any],
        path: str,
        headers: list[tuple[bytes, bytes]],
        body: AsyncIterator[bytes],
        send: Send,
    ) -> None:
        request = client.build_request(
            scope["method"],
            path,
            params=scope.get("query_string", b"").decode("latin-1") or None,
            headers=headers,
            content=body,
        )
        response = await client.send(request, stream=True)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [(k, v) for k, v in response.headers.raw if k.lower() not in _HOP],
                }
            )
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()
