"""Flow control of a worker's streams, the worker's side: a window of items it may send
before the server has handed earlier ones to the HTTP client (`transport.WINDOW`; the server
grants credit as its client reads, `workers/calls.py`). A slow reader thus slows the
generator instead of filling the server's memory, and a cancelled stream stops waiting.
"""

from __future__ import annotations

import asyncio
import threading

__all__ = ["StreamWindow"]


class StreamWindow:
    """Flow control of one stream: how many items the worker may send before the server takes
    them (`transport.WINDOW`). A sync generator waits for credit in its thread, an async one on
    the worker's loop; credit arrives on the reading thread."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._closed = False
        self._cond = threading.Condition()
        self._wakeup: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def grant(self, count: int) -> None:
        with self._cond:
            self._free += count
            self._cond.notify_all()
            loop, wakeup = self._loop, self._wakeup
        if loop is not None and wakeup is not None:
            loop.call_soon_threadsafe(wakeup.set)

    def close(self) -> None:
        """The stream was cancelled: whoever waits for credit stops waiting (and gets False)."""
        with self._cond:
            self._closed = True
        self.grant(0)

    def take(self) -> bool:
        """Block until one item may be sent; False when the stream was cancelled."""
        with self._cond:
            while self._free <= 0 and not self._closed:
                self._cond.wait()
            if self._closed:
                return False
            self._free -= 1
            return True

    async def take_async(self) -> bool:
        """`take()` on the worker's loop."""
        while True:
            with self._cond:
                if self._closed:
                    return False
                if self._free > 0:
                    self._free -= 1
                    return True
                if self._wakeup is None:
                    self._wakeup = asyncio.Event()
                    self._loop = asyncio.get_running_loop()
                self._wakeup.clear()
                wakeup = self._wakeup
            await wakeup.wait()
