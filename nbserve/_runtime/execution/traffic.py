"""Traffic control for one deployment: `max_concurrency` (429) and `timeout` (504), per route stats.

How this differs from BentoML's middlewares (bentoml.md §5.3, §11), on purpose:
- One timer per request, armed when the call starts and cancelled in a `finally` when it ends,
  whatever the outcome. BentoML's timer is only disarmed by the first response byte and keeps
  every finished request referenced for `timeout` seconds; its heap grows and GC pauses reach
  half a second.
- A concurrency slot is held until the work really ends, not until the response is sent. A sync
  API past its timeout cannot be interrupted (Python threads cannot be killed), so the client
  gets its 504 at once but the slot stays taken until the thread returns; otherwise each timeout
  would let one more call into the pool than `max_concurrency` allows (BentoML #5642).
  An async API past its timeout is cancelled.
- Over `max_concurrency` the answer is an immediate 429, as in BentoML: no queue.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from nbserve.exceptions import RequestTimeout

__all__ = ["ConcurrencySlot", "RouteStats", "Traffic", "WorkContinues"]

T = TypeVar("T")
Finalizer = Callable[[], Any]
"""Run when a request's work has ended: a plain function, or one returning an awaitable."""


class ConcurrencySlot:
    """One admitted request. `close()` runs its finalizers and gives the slot back.

    When the request timed out while its work goes on, `close()` does nothing: the slot closes
    itself when that work ends (see `Traffic.run`).
    """

    __slots__ = ("_closed", "_finalizers", "_traffic", "detached")

    def __init__(self, traffic: Traffic) -> None:
        self._traffic = traffic
        self._finalizers: list[Finalizer] | None = None
        self._closed = False
        self.detached = False

    def on_close(self, finalizer: Finalizer) -> None:
        """Run `finalizer` once the request's work has ended (temp dirs, generator closing)."""
        if self._finalizers is None:
            self._finalizers = []
        self._finalizers.append(finalizer)

    async def close(self) -> None:
        if self.detached or self._closed:
            return
        await self._finish()

    async def _finish(self) -> None:
        self._closed = True
        try:
            for finalizer in reversed(self._finalizers or ()):
                try:
                    result = finalizer()
                    if inspect.isawaitable(result):
                        await result
                except Exception:  # a failing cleanup must not leak the slot
                    self._traffic.log_cleanup_failure()
        finally:
            self._traffic.leave()


class Traffic:
    """The gate every API request of one deployment passes: a counter and a per-request timer."""

    def __init__(
        self,
        *,
        timeout: float,
        max_concurrency: int | None,
        on_cleanup_failure: Callable[[], None] | None = None,
    ) -> None:
        self.timeout = timeout
        self.max_concurrency = max_concurrency
        self.active = 0
        """Requests admitted whose work has not ended yet (timed-out sync calls included)."""
        self._idle: asyncio.Event | None = None
        self._on_cleanup_failure = on_cleanup_failure
        self._closing: set[asyncio.Task[None]] = set()  # strong refs: asyncio keeps weak ones

    def enter(self) -> ConcurrencySlot | None:
        """A slot for a new request, or None when `max_concurrency` requests are already in."""
        limit = self.max_concurrency
        if limit is not None and self.active >= limit:
            return None
        self.active += 1
        return ConcurrencySlot(self)

    def leave(self) -> None:
        self.active -= 1
        if self.active == 0 and self._idle is not None:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no request's work is running; False if `timeout` passed first."""
        if self.active == 0:
            return True
        if self._idle is None:
            self._idle = asyncio.Event()
        self._idle.clear()
        try:
            await asyncio.wait_for(self._idle.wait(), max(timeout, 0.0))
        except asyncio.TimeoutError:
            return self.active == 0
        return True

    async def run(self, work: Awaitable[T], slot: ConcurrencySlot) -> T:
        """Await `work` for at most `timeout` seconds; past it raise `RequestTimeout` (504).

        The work runs in the caller's task (no extra task, no extra loop iteration: this is the
        path every request takes); the timer cancels that task. Work that cannot be stopped (a
        sync call already in a thread) raises `WorkContinues` on cancellation, and the slot then
        stays taken until that work really ends.
        """
        task = asyncio.current_task()
        assert task is not None, "Traffic.run() must be awaited inside a task"
        deadline = _Deadline(task)
        timer = asyncio.get_running_loop().call_later(self.timeout, deadline)
        try:
            return await work
        except asyncio.CancelledError:
            if not deadline.expired:
                raise
            deadline.uncancel()
        except WorkContinues as running:
            # Whoever cancelled (the deadline, a client that left, the server stopping), the
            # slot stays taken until the work really ends, so `max_concurrency` holds.
            slot.detached = True
            running.future.add_done_callback(lambda future: _close_later(future, slot))
            if not deadline.expired:
                raise asyncio.CancelledError from running
            deadline.uncancel()
        finally:
            timer.cancel()
        msg = f"Not able to process the request in {self.timeout:g} seconds (the service's traffic.timeout); raise it with @nbserve.service(traffic={{'timeout': ...}}) if the API needs longer"
        raise RequestTimeout(msg)

    def log_cleanup_failure(self) -> None:
        if self._on_cleanup_failure is not None:
            self._on_cleanup_failure()


class WorkContinues(Exception):
    """Raised by an executor whose call was cancelled while its work cannot be stopped (a sync
    call running in a thread, a call inside a worker process). `future` completes when the
    work really ends; `Traffic.run` keeps the request's slot until then."""

    def __init__(self, future: asyncio.Future[Any]) -> None:
        super().__init__("the call was cancelled but its work continues")
        self.future = future


class _Deadline:
    """The timer's callback: cancel the request's task, and remember that it was us."""

    __slots__ = ("expired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.expired = False

    def __call__(self) -> None:
        self.expired = True
        self.task.cancel()

    def uncancel(self) -> None:
        # Python 3.11+ counts cancellations; ours is consumed here, so later awaits in this
        # request (writing the 504) are not cancelled again.
        uncancel = getattr(self.task, "uncancel", None)
        if uncancel is not None:
            uncancel()


def _close_later(future: asyncio.Future[Any], slot: ConcurrencySlot) -> None:
    if not future.cancelled():
        future.exception()  # retrieve it, or asyncio logs "exception was never retrieved"
    slot.detached = False
    closing = slot._traffic._closing
    close = asyncio.ensure_future(slot.close())
    closing.add(close)
    close.add_done_callback(closing.discard)


class RouteStats:
    """Counts and recent latencies of one route, for `handle.stats()`; O(1) per request."""

    __slots__ = ("count", "errors", "latencies")

    def __init__(self, window: int = 2048) -> None:
        self.count = 0
        self.errors = 0
        self.latencies: collections.deque[float] = collections.deque(maxlen=window)

    def record(self, status: int, seconds: float) -> None:
        self.count += 1
        if status >= 400:
            self.errors += 1
        self.latencies.append(seconds)

    def summary(self) -> dict[str, float | int]:
        ordered = sorted(self.latencies)

        def quantile(q: float) -> float:
            if not ordered:
                return 0.0
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000.0

        return {
            "count": self.count,
            "errors": self.errors,
            "p50_ms": quantile(0.50),
            "p95_ms": quantile(0.95),
            "p99_ms": quantile(0.99),
        }
