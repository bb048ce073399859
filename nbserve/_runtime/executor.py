"""Executors run a service's code: `InlineExecutor` here, worker processes elsewhere, one interface.

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
- Cancellation (the traffic timeout): an async call is cancelled; a sync call still queued is
  withdrawn and never runs; one already in a thread raises `WorkContinues` with a future of the
  thread's end, so the traffic layer holds the concurrency slot until the work really stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from nbserve._runtime.logs import output_target, route_output
from nbserve._runtime.traffic import WorkContinues
from nbserve._sdk.context import Context, current_context

if TYPE_CHECKING:
    from nbserve._sdk.method import APIMethod
    from nbserve._sdk.service import Service

__all__ = ["Executor", "InlineExecutor", "Probe"]

T = TypeVar("T")
Probe = Literal["__is_ready__", "__is_alive__"]
_END = object()


class Executor(Protocol):
    """What a `Deployment` needs from whatever runs the user's code."""

    ready: bool
    """True between a successful `start()` and `stop()`."""

    async def start(self) -> None:
        """Create the instance(s): `__init__` then the `on_startup` hooks (per worker)."""

    async def call(self, api: APIMethod[..., Any], kwargs: dict[str, Any], ctx: Context) -> Any:
        """Call one API. Cancelled while its work cannot stop: raise `WorkContinues`."""

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
        self.instance: Any = None
        self._pool: _Threads | None = None

    # --- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        # The pool's threads print where the server's own thread does (logs.route_output).
        self._pool = _Threads(self.threads, f"nbserve-{self.service.name}", output_target())
        for hook in self.service.deployment_hooks:  # once per deployment, before the instance
            result = await self._in_pool(hook)
            if inspect.isawaitable(result):
                await result
        self.instance = await self._in_pool(self.service)
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
        args = _bind(api, kwargs, ctx)
        if api.is_async:
            return await api.func(self.instance, *args, **kwargs)
        return await self._in_pool(_SyncCall(api.func, self.instance, args, kwargs, ctx))

    def stream(
        self, api: APIMethod[..., Any], kwargs: dict[str, Any], ctx: Context
    ) -> AsyncIterator[Any]:
        args = _bind(api, kwargs, ctx)
        if api.is_async:
            agen: AsyncIterator[Any] = api.func(self.instance, *args, **kwargs)
            return agen
        generator: Iterator[Any] = api.func(self.instance, *args, **kwargs)
        return _SyncStream(self, generator, ctx)

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
                raise
            # Running in a thread, which cannot be interrupted: the caller keeps the request's
            # concurrency slot until it ends (traffic.py).
            raise WorkContinues(ended) from None


def root_args(api: APIMethod[..., Any], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Take a root input out of `kwargs`: it is positional-only (`def f(self, x, /)`)."""
    if api.input.root:
        return (kwargs.pop(api.input.fields[0]),)
    return ()


def _bind(api: APIMethod[..., Any], kwargs: dict[str, Any], ctx: Context) -> tuple[Any, ...]:
    """Positional arguments for the call; adds the context."""
    if api.ctx_param is not None:
        kwargs[api.ctx_param] = ctx
    return root_args(api, kwargs)


class _SyncCall:
    """The pool-side call of a sync API; binds the request's context in the worker thread."""

    __slots__ = ("args", "ctx", "func", "instance", "kwargs")

    def __init__(
        self,
        func: Callable[..., Any],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        ctx: Context,
    ) -> None:
        self.func = func
        self.instance = instance
        self.args = args
        self.kwargs = kwargs
        self.ctx = ctx

    def __call__(self) -> Any:
        token = current_context.set(self.ctx)
        try:
            return self.func(self.instance, *self.args, **self.kwargs)
        finally:
            current_context.reset(token)


class _SyncStream:
    """An async iterator over a sync generator, advanced in the executor's pool."""

    def __init__(self, executor: InlineExecutor, generator: Iterator[Any], ctx: Context) -> None:
        self._executor = executor
        self._generator = generator
        self._ctx = ctx
        self._done = False

    def __aiter__(self) -> _SyncStream:
        return self

    async def __anext__(self) -> Any:
        if self._done:
            raise StopAsyncIteration
        item = await self._executor._in_pool(self._step)
        if item is _END:
            self._done = True
            raise StopAsyncIteration
        return item

    def _step(self) -> Any:
        token = current_context.set(self._ctx)
        try:
            return next(self._generator, _END)
        except BaseException:
            self._done = True
            raise
        finally:
            current_context.reset(token)

    async def aclose(self) -> None:
        if self._done:
            return
        self._done = True
        close = getattr(self._generator, "close", None)
        if close is not None:
            await self._executor._in_pool(close)


# --- the thread pool --------------------------------------------------------------------------
_QUEUED, _RUNNING, _DONE, _WITHDRAWN = range(4)


class _Job:
    __slots__ = ("ended", "fn", "future", "loop", "state")

    def __init__(self, fn: Callable[[], Any], loop: asyncio.AbstractEventLoop) -> None:
        self.fn = fn
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.ended: asyncio.Future[None] | None = None
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

    def cancel(self, job: _Job) -> asyncio.Future[None] | None:
        """On the loop: withdraw a queued job (None), or a future of a running job's end."""
        with self._lock:
            if job.state == _QUEUED:
                job.state = _WITHDRAWN
                return None
            ended: asyncio.Future[None] = job.loop.create_future()
            if job.state == _RUNNING:
                job.ended = ended
            else:  # done: its result is already on its way to the loop
                ended.set_result(None)
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
                # SystemExit / KeyboardInterrupt must not escape into the server's event loop.
                error = (
                    exc if isinstance(exc, Exception) else RuntimeError(f"the API raised {exc!r}")
                )
            with self._lock:
                job.state = _DONE
                ended = job.ended
            with contextlib.suppress(RuntimeError):  # the loop closed: the server stopped meanwhile
                job.loop.call_soon_threadsafe(_deliver, job.future, ended, result, error)
            del job, result, error  # drop references before blocking on the queue


def _deliver(
    future: asyncio.Future[Any],
    ended: asyncio.Future[None] | None,
    result: Any,
    error: BaseException | None,
) -> None:
    if not future.done():  # cancelled when the request timed out
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    if ended is not None and not ended.done():
        ended.set_result(None)
