"""The event loops servers run on: made (uvloop's when installed, else asyncio's), and closed
cleanly (pending tasks cancelled, async generators and the default executor finished)."""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import Callable
from typing import Any

__all__ = ["call", "close_loop", "new_event_loop", "running_loop"]


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed, else asyncio's; `NBSERVE_EVENT_LOOP` picks one.

    uvloop is the default because a sync API's request pays two loop wake-ups (the hop to the
    API thread and back) plus Tornado's reads and writes, and uvloop does those in C: on
    benchmarks/serving.py (mlp, inline unbatched, 64 connections) it beat asyncio's loop in four of
    five same-run comparisons (0.91× vs 0.86× plain Tornado on a quiet machine), with 1–12 % less
    CPU per request; the shared 2-core machine's noise is of the same order. `asyncio` forces asyncio's
    loop (a debugging aid, or to rule uvloop out); `uvloop` requires it (an error without it).
    """
    choice = os.environ.get("NBSERVE_EVENT_LOOP", "").lower()
    if choice == "asyncio":
        return asyncio.new_event_loop()
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            msg = "NBSERVE_EVENT_LOOP=uvloop but uvloop is not installed: pip install uvloop, or unset it"
            raise RuntimeError(msg) from None
        return asyncio.new_event_loop()  # e.g. Windows, where uvloop does not exist
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


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
