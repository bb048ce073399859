"""The event loops servers run on: made (asyncio's, or uvloop's on request), and closed
cleanly (pending tasks cancelled, async generators and the default executor finished)."""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import Callable
from typing import Any

__all__ = ["call", "close_loop", "new_event_loop", "running_loop"]


def new_event_loop() -> asyncio.AbstractEventLoop:
    """asyncio's loop, or uvloop's with `NBSERVE_EVENT_LOOP=uvloop` (when it is installed).

    An opt-in for measuring (benchmarks/serving.py's `inline-uv` target), not the default.
    """
    if os.environ.get("NBSERVE_EVENT_LOOP", "").lower() == "uvloop":
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            msg = "NBSERVE_EVENT_LOOP=uvloop but uvloop is not installed: pip install uvloop, or unset it"
            raise RuntimeError(msg) from None
        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        return loop
    return asyncio.new_event_loop()


def running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def call(fn: Callable[[], Any]) -> Any:
    """`fn()` as a coroutine, to run it on another thread's loop (`run_coroutine_threadsafe`)."""
    return fn()


def close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left on the loop, finish async generators and the default executor, close."""
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()
