"""Executors run a service's code: `InlineExecutor` here, worker processes elsewhere, one interface.

Both call the user's methods through `invoke.py` (binding, context, sync/async/generator
dispatch, error capture); they differ only in where the call runs.

`InlineExecutor` holds one instance of the user's class in the server's process (a notebook's
kernel: instant start, the kernel's loaded objects and GPU shared). Its rules:
- `__init__` and sync `on_startup` / `on_shutdown` hooks run in the API thread pool (so a slow
  model load never stalls the event loop, and thread-bound resources made in `__init__`, such as
  a sqlite connection, are usable from the API thread when `threads=1`); async hooks run on the
  loop.
- Sync APIs run in a pool of `threads` threads, made once at start (never per request); async
  APIs run on the server's loop.
- Sync generators are advanced in the pool one item at a time, so a slow generator never blocks
  the loop and a disconnected client stops it between items.
- Cancellation (the traffic timeout, a client that left): an async call is cancelled; a sync
  call still queued is withdrawn and never runs (`Withdrawn`); one already in a thread raises
  `WorkContinues` with a future of the thread's end, so the traffic layer holds the concurrency
  slot until the work really stops, and its result is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import queue
import threading
import types
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from nbserve._runtime.execution.invoke import (
    END,
    Signature,
    SyncSteps,
    call_async,
    call_sync,
    captured,
)
from nbserve._runtime.execution.traffic import WorkContinues
from nbserve._runtime.logs import output_target, route_output
from nbserve._sdk.context import Context

if TYPE_CHECKING:
    from nbserve._sdk.method import APIMethod
    from nbserve._sdk.service import Service

__all__ = ["Executor", "InlineExecutor", "Outcome", "Probe", "Withdrawn"]

T = TypeVar("T")
Probe = Literal["__is_ready__", "__is_alive__"]
Outcome = Literal["finished", "withdrawn", "cancelled"]
"""How abandoned work ended; the result of a `WorkContinues.future` an executor raises:
it ran to the end (its result dropped), it was withdrawn before it started, or it was cancelled
while it ran (async work, told to stop)."""


class Withdrawn(asyncio.CancelledError):
    """The call was cancelled while it still waited for a thread or a worker: it never ran."""


class Executor(Protocol):
    """What a `Deployment` (and its batchers) need from whatever runs the user's code."""

    ready: bool
    """True between a successful `start()` and `stop()`."""
    batch_slots: int
    """How many batches of one API may be in flight at once (one per instance that can run one)."""
    capacity_listeners: list[Callable[[], None]]
    """Called when `batch_slots` or readiness change (a worker came or went): batchers re-check."""

    async def start(self) -> None:
        """Create the instance(s): `__init__` then the `on_startup` hooks (per worker)."""

    async def call(self, api: APIMethod[..., Any], kwargs: dict[str, Any], ctx: Context) -> Any:
        """Call one API. Cancelled: raise `Withdrawn` if it never ran, `CancelledError` if it
        stopped, `WorkContinues` (with a future of its `Outcome`) if it goes on for now."""

    def stream(
        self, api: APIMethod[..., Any], kwargs: dict[str, Any], ctx: Context
    ) -> AsyncIterator[Any]:
        """Iterate a streaming API (`aclose()` ends it early); `__anext__` cancels as `call` does."""

    async def check(self, probe: Probe) -> bool:
        """The instance's `__is_ready__()` / `__is_alive__()` (True when it does not define it)."""

    async def metrics_text(self, text: str) -> str:
        """The instance's `__metrics__(text)` post-processing of `/metrics`, else `text`."""

    async def stop(self) -> None:
        """Run the `on_shutdown` hooks (per worker) and release threads or processes."""


class InlineExecutor:
    """One instance of the service class in this process (see the module docstring)."""

    def __init__(self, service: Service[Any], *, threads: int | None = None) -> None:
        self.service = service
        self.threads = threads if threads is not None else service.config.threads
        self.ready = False
        self.batch_slots = 1  # one instance: one batch at a time
        self.capacity_listeners: list[Callable[[], None]] = []  # its capacity never changes
        self.instance: Any = None
        self._pool: _Threads | None = None
        self._calls: dict[str, tuple[Signature, Callable[..., Any]]] = {}
        """Per API name: how it is called and the instance's bound method (made at start)."""

    # --- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        # The pool's threads print where the server's own thread does (logs.route_output).
        self._pool = _Threads(self.threads, f"nbserve-{self.service.name}", output_target())
        for hook in self.service.deployment_hooks:  # once per deployment, before the instance
            result = await self._in_pool(hook)
            if inspect.isawaitable(result):
                await result
        self.instance = await self._in_pool(self.service)
        self._calls = {
            api.name: (Signature.of(api), types.MethodType(api.func, self.instance))
            for api in self.service.apis.values()
        }
        for name in self.service.startup_hooks:
            await self._run_hook(name)
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        try:
            if self.instance is not None:
                for name in self.service.shutdown_hooks:
                    await self._run_hook(name)
        finally:
            if self._pool is not None:
                # Threads still running a timed-out call finish on their own; never block here.
                self._pool.shutdown()

    async def _run_hook(self, name: str) -> None:
        hook = getattr(self.instance, name)
        if inspect.iscoroutinefunction(hook):
            await hook()
            return
        result = await self._in_pool(hook)
        if inspect.isawaitable(result):  # a sync function that returned a coroutine
            await result

    # --- requests -----------------------------------------------------------------------------
    async def call(self, api: APIMethod[..., Any], kwargs: dict[str, Any], ctx: Context) -> Any:
        sig, fn = self._calls[api.name]
        args, kwargs = sig.bind(kwargs, ctx)
        if sig.is_async:
            return await call_async(fn, args, kwargs, ctx)
        return await self._in_pool(functools.partial(call_sync, fn, args, kwargs, ctx))

    def stream(
        self, api: APIMethod[..., Any], kwargs: dict[str, Any], ctx: Context
    ) -> AsyncIterator[Any]:
        sig, fn = self._calls[api.name]
        args, kwargs = sig.bind(kwargs, ctx)
        if sig.is_async:  # iterated in the request's task, where the context is already set
            agen: AsyncIterator[Any] = fn(*args, **kwargs)
            return agen
        return _SyncStream(self, SyncSteps(fn(*args, **kwargs), ctx))

    async def check(self, probe: Probe) -> bool:
        hook = getattr(self.instance, probe, None)
        if hook is None:
            return True
        result = hook()
        if inspect.isawaitable(result):
            result = await result
        return bool(result)

    async def metrics_text(self, text: str) -> str:
        hook = getattr(self.instance, "__metrics__", None)
        if hook is None:
            return text
        result = hook(text)
        if inspect.isawaitable(result):
            result = await result
        return str(result)

    async def _in_pool(self, fn: Callable[[], T]) -> T:
        """Run `fn` in the pool. Cancelled: withdrawn if still queued, else `WorkContinues`."""
        assert self._pool is not None, "InlineExecutor.start() has not run"
        job = self._pool.submit(fn)
        try:
            return await job.future  # type: ignore[no-any-return]
        except asyncio.CancelledError:
            ended = self._pool.cancel(job)
            if ended is None:  # still queued: it never runs
                raise Withdrawn from None
            # Running in a thread, which cannot be interrupted: the caller keeps the request's
            # concurrency slot until it ends (traffic.py), and its result is dropped.
            raise WorkContinues(ended) from None


class _SyncStream:
    """An async iterator over a sync generator, advanced in the executor's pool."""

    def __init__(self, executor: InlineExecutor, steps: SyncSteps) -> None:
        self._executor = executor
        self._steps = steps
        self._step_running: asyncio.Future[Outcome] | None = None
        """The end of a step abandoned while it ran in a thread (see `aclose`)."""

    def __aiter__(self) -> _SyncStream:
        return self

    async def __anext__(self) -> Any:
        if self._steps.done:
            raise StopAsyncIteration
        try:
            item = await self._executor._in_pool(self._steps.step)
        except WorkContinues as running:
            self._step_running = running.future
            raise
        if item is END:
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        if self._steps.done:
            return
        running = self._step_running
        if running is not None and not running.done():
            # The generator is executing in a thread (closing it now would raise "generator
            # already executing"): close it after that step, without waiting for it here.
            running.add_done_callback(lambda _: self._close_later())
            return
        await self._executor._in_pool(self._steps.close)

    def _close_later(self) -> None:
        pool = self._executor._pool
        if pool is not None and not self._steps.done:
            job = pool.submit(self._steps.close)
            job.future.add_done_callback(_retrieve)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a future's outcome seen: nobody awaits it, and asyncio would log it otherwise."""
    if not future.cancelled():
        future.exception()


# --- the thread pool --------------------------------------------------------------------------
_QUEUED, _RUNNING, _DONE, _WITHDRAWN = range(4)


class _Job:
    __slots__ = ("ended", "fn", "future", "loop", "state")

    def __init__(self, fn: Callable[[], Any], loop: asyncio.AbstractEventLoop) -> None:
        self.fn = fn
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.ended: asyncio.Future[Outcome] | None = None
        self.state = _QUEUED


class _Threads:
    """`count` daemon threads fed by a `SimpleQueue`; results return by `call_soon_threadsafe`.

    `concurrent.futures.ThreadPoolExecutor` plus `asyncio.wrap_future` costs about twice as much
    per call (a concurrent future, a chained asyncio future, two callbacks, thread-count
    bookkeeping), and every sync API request pays it. Daemon threads, so that a call stuck
    forever cannot keep a kernel or the CLI from exiting.
    """

    def __init__(self, count: int, name: str, output: logging.Logger | None) -> None:
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards Job.state / Job.ended across the two sides
        self._output = output
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}_{i}", daemon=True)
            for i in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[[], Any]) -> _Job:
        job = _Job(fn, asyncio.get_running_loop())
        self._queue.put(job)
        return job

    def cancel(self, job: _Job) -> asyncio.Future[Outcome] | None:
        """On the loop: withdraw a queued job (None), or a future of a running job's end."""
        with self._lock:
            if job.state == _QUEUED:
                job.state = _WITHDRAWN
                return None
            ended: asyncio.Future[Outcome] = job.loop.create_future()
            if job.state == _RUNNING:
                job.ended = ended
            else:  # done: its result is already on its way to the loop
                ended.set_result("finished")
            return ended

    def shutdown(self) -> None:
        for _ in self._threads:
            self._queue.put(None)

    def _work(self) -> None:
        route_output(self._output)
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._lock:
                if job.state == _WITHDRAWN:
                    continue
                job.state = _RUNNING
            result: Any = None
            error: BaseException | None = None
            try:
                result = job.fn()
            except BaseException as exc:
                error = captured(exc)
            with self._lock:
                job.state = _DONE
                ended = job.ended
            with contextlib.suppress(RuntimeError):  # the loop closed: the server stopped meanwhile
                job.loop.call_soon_threadsafe(_deliver, job.future, ended, result, error)
            del job, result, error  # drop references before blocking on the queue


def _deliver(
    future: asyncio.Future[Any],
    ended: asyncio.Future[Outcome] | None,
    result: Any,
    error: BaseException | None,
) -> None:
    if not future.done():  # cancelled when the request timed out
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    if ended is not None and not ended.done():
        ended.set_result("finished")


if TYPE_CHECKING:

    def _is_an_executor(executor: InlineExecutor) -> Executor:
        return executor  # mypy checks InlineExecutor against the protocol here
