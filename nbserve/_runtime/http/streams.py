"""Streamed answers of generator APIs: one HTTP chunk per item, or Server-Sent Events.

The deadline (`traffic.timeout`) covers the first item only: a stream that has started is
never cut short. With `Accept: text/event-stream` each item is an SSE frame and a failure after
the first item is an `event: error` frame; without SSE such a failure aborts the chunked body,
so the client sees a broken stream instead of a silently truncated one (BentoML's behaviour).
A client that leaves closes the generator (the slot's closer), which stops the work.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson
import tornado.iostream

from nbserve._runtime.http.errors import error_body, error_for

if TYPE_CHECKING:
    from nbserve._runtime.deployment import Deployment
    from nbserve._runtime.execution.traffic import ConcurrencySlot
    from nbserve._runtime.http.api import APIHandler
    from nbserve._sdk.context import Context
    from nbserve._sdk.method import APIMethod

__all__ = ["send_stream"]

_SSE_TYPE = "text/event-stream"
_EMPTY: Any = object()


async def send_stream(
    handler: APIHandler,
    deployment: Deployment,
    api: APIMethod[..., Any],
    kwargs: dict[str, Any],
    ctx: Context,
    slot: ConcurrencySlot,
) -> int:
    items: AsyncIterator[Any] = await deployment.stream(api, kwargs, ctx)
    closer = getattr(items, "aclose", None)
    if closer is not None:
        slot.on_close(closer)
    sse = _SSE_TYPE in handler.request.headers.get("Accept", "")
    # The deadline covers the first item only: a stream that has started is never cut short.
    try:
        first = await deployment.traffic.run(_first_item(items), slot)
    except StopAsyncIteration:
        first = _EMPTY
    if api.ctx_param is not None:
        handler._apply_context(ctx)
    handler.set_header(
        "Content-Type", "text/event-stream; charset=utf-8" if sse else api.output.media_type
    )
    handler.set_header("Cache-Control", "no-cache")
    handler.set_header("X-Accel-Buffering", "no")  # tell nginx-style proxies not to buffer
    encode = api.output.encode_item
    item = first
    try:
        while item is not _EMPTY:
            chunk = encode(item)
            handler.write(_sse_frame(chunk) if sse else chunk)
            await handler.flush()  # one flush per item: one HTTP chunk per item
            try:
                item = await items.__anext__()
            except StopAsyncIteration:
                item = _EMPTY
    except tornado.iostream.StreamClosedError:
        # The client left; closing the generator (slot.close) stops the work.
        deployment.metrics.work_abandoned(handler.request.path, "cancelled")
        return handler.get_status()
    except Exception as exc:
        if handler._client_left:  # cancelled by on_connection_close: counted in _serve
            raise
        return _fail_stream(handler, exc, sse)
    handler.finish()
    return handler.get_status()


def _fail_stream(handler: APIHandler, exc: Exception, sse: bool) -> int:
    status, message, detail, _ = error_for(exc, handler.request_id, expose=handler.server.debug)
    handler.server.log.logger.error(
        "request %s: stream %s failed after it started",
        handler.request_id,
        handler.request.path,
        exc_info=exc,
    )
    if not handler._headers_written:
        handler.clear()
        handler.reply_error(status, message, detail)
        return status
    if sse:
        event = orjson.loads(error_body(message, detail))
        event["error_code"] = status
        handler.write(b"event: error\ndata: " + orjson.dumps(event) + b"\n\n")
        handler.finish()
    else:
        # No way to say "failed" inside a raw chunked body: end it without its last chunk.
        connection = handler.request.connection
        if connection is not None:
            connection.close()  # type: ignore[attr-defined]
        handler._finished = True
    return handler.get_status()


async def _first_item(items: AsyncIterator[Any]) -> Any:
    return await items.__anext__()


def _sse_frame(chunk: bytes) -> bytes:
    """One SSE event: each line of the item as a `data:` line, then a blank line."""
    if b"\n" not in chunk and b"\r" not in chunk:
        return b"data: " + chunk + b"\n\n"
    lines = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    return b"".join(b"data: " + line + b"\n" for line in lines) + b"\n"
