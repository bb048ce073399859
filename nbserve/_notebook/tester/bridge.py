"""The tester's transport: the browser asks the kernel, the kernel makes the real HTTP call.

The browser may have no route to the service's port (VS Code remote, a JupyterHub without a
proxy, Binder), but it always reaches the kernel: the widget's comm carries a request
description (and file contents as binary buffers) to `Bridge.submit`, which returns at once
and runs the call on one private event-loop thread for the whole process. The call goes over
real HTTP to the service on its loopback address with its bearer token, so the tester
exercises what clients exercise. The answer goes back as messages through `reply`:

- `{"type": "head", "id", "status", "reason", "headers", "ttfb_ms"}` once the headers arrive,
- `{"type": "chunk", "id", "seq"}` with the bytes as one buffer, as they arrive (a stream
  grows chunk by chunk in the page),
- `{"type": "done", "id", "ms", "size", "chunks", "request_id"}` at the end, or
  `{"type": "failed", "id", "message"}` when no HTTP answer came (refused, reset, timeout).

Why a private thread and not the kernel's loop: comm handlers may run on a kernel subshell
thread while a cell runs (ipykernel 7, JupyterLab 4.4+) and the kernel's own loop is blocked
by a running cell; a thread with its own loop answers in both cases, and never prints (errors
become `failed` messages).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

import httpx

__all__ = ["Bridge", "Reply", "TesterRequest", "background_loop", "build_request"]

Reply = Callable[[dict[str, Any], list[bytes]], None]
TesterRequest = Mapping[str, Any]

# Long enough for a slow model's first call, short enough that a hung request ends.
REQUEST_TIMEOUT_S = 300.0

_loop_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_client: httpx.AsyncClient | None = None


def _http() -> httpx.AsyncClient:
    """The loop's one client (a new one per request would build an SSL context each time,
    ~20 ms). No keep-alive: no idle socket outlives a request. `trust_env=False`: the service
    is on loopback, so an HTTP(S)_PROXY from the environment must not be used."""
    global _client
    if _client is None:
        _client = httpx.AsyncClient(
            timeout=REQUEST_TIMEOUT_S,
            trust_env=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        )
    return _client


def background_loop() -> asyncio.AbstractEventLoop:
    """The process's tester loop, on a daemon thread started on first use."""
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="nbserve-tester", daemon=True)
            thread.start()
            _loop = loop
        return _loop


def build_request(
    base_url: str, token: str | None, message: TesterRequest, buffers: Sequence[bytes]
) -> tuple[str, str, dict[str, Any]]:
    """Method, URL and httpx keyword arguments for one tester request message.

    `message`: `path` (the API's route, relative to `base_url`, which holds the path prefix), `kind` (`json`, `text`, `multipart` or
    `empty`), `body` (JSON text or raw text), `fields` (multipart: name → JSON text, encoded as
    BentoML's client sends them), `files` (multipart: `{field, filename, content_type}`, the
    contents in `buffers`, same order).
    """
    path = str(message.get("path") or "/")
    if not path.startswith("/"):
        path = "/" + path
    url = base_url.rstrip("/") + path
    headers: dict[str, str] = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    kind = message.get("kind", "json")
    kwargs: dict[str, Any] = {"headers": headers}
    if kind == "json":
        headers["Content-Type"] = "application/json"
        kwargs["content"] = str(message.get("body") or "{}").encode()
    elif kind == "text":
        headers["Content-Type"] = "text/plain; charset=utf-8"
        kwargs["content"] = str(message.get("body") or "").encode()
    elif kind == "multipart":
        files_meta = list(message.get("files") or [])
        if len(files_meta) != len(buffers):
            msg = f"{len(files_meta)} file(s) described but {len(buffers)} sent"
            raise ValueError(msg)
        kwargs["files"] = [
            (
                str(meta["field"]),
                (
                    str(meta.get("filename") or "file"),
                    bytes(buf),
                    str(meta.get("content_type") or "application/octet-stream"),
                ),
            )
            for meta, buf in zip(files_meta, buffers, strict=True)
        ]
        kwargs["data"] = {str(k): str(v) for k, v in (message.get("fields") or {}).items()}
    elif kind != "empty":
        msg = f"unknown request kind {kind!r}: use json, text, multipart or empty"
        raise ValueError(msg)
    return str(message.get("method") or "POST").upper(), url, kwargs


class Bridge:
    """Runs tester requests against one service; `target()` gives (base URL, token) at call
    time, so a restarted service on a new port is followed."""

    def __init__(self, target: Callable[[], tuple[str, str | None]], reply: Reply) -> None:
        self._target = target
        self._reply = reply
        self._futures: set[Future[None]] = set()
        self._lock = threading.Lock()

    def submit(self, message: TesterRequest, buffers: Sequence[bytes] = ()) -> Future[None]:
        """Start the request described by `message` and return at once (any thread)."""
        coro = self._run(dict(message), [bytes(b) for b in buffers])
        future = asyncio.run_coroutine_threadsafe(coro, background_loop())
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: Future[None]) -> None:
        with self._lock:
            self._futures.discard(future)

    def wait(self, timeout: float = 30) -> None:
        """Block until every submitted request has answered (tests, `close`)."""
        with self._lock:
            pending = list(self._futures)
        for future in pending:
            with contextlib.suppress(Exception):
                future.result(timeout)

    def _send(self, content: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        with contextlib.suppress(Exception):  # a closed comm: nobody is listening any more
            self._reply(content, buffers or [])

    async def _run(self, message: dict[str, Any], buffers: list[bytes]) -> None:
        rid = message.get("id")
        try:
            base_url, token = self._target()
            method, url, kwargs = build_request(base_url, token, message, buffers)
        except Exception as exc:
            self._send({"type": "failed", "id": rid, "message": str(exc)})
            return
        start = time.perf_counter()
        size = 0
        seq = 0
        try:
            async with _http().stream(method, url, **kwargs) as response:
                self._send(
                    {
                        "type": "head",
                        "id": rid,
                        "status": response.status_code,
                        "reason": response.reason_phrase,
                        "headers": dict(response.headers),
                        "ttfb_ms": (time.perf_counter() - start) * 1000,
                    }
                )
                async for chunk in response.aiter_raw():
                    if not chunk:
                        continue
                    size += len(chunk)
                    self._send({"type": "chunk", "id": rid, "seq": seq}, [chunk])
                    seq += 1
                request_id = response.headers.get("x-request-id")
        except Exception as exc:
            detail = str(exc) or type(exc).__name__
            self._send({"type": "failed", "id": rid, "message": f"no answer from {url}: {detail}"})
            return
        self._send(
            {
                "type": "done",
                "id": rid,
                "ms": (time.perf_counter() - start) * 1000,
                "size": size,
                "chunks": seq,
                "request_id": request_id,
            }
        )
