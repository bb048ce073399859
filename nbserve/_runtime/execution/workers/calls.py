"""Calls to worker processes: which worker takes a call, and how its answer comes back.

- A call goes to the least-loaded ready worker. A worker holds at most `2 × threads` sync calls
  (batches included): `threads` running and as many queued right behind them, so that it never
  idles while the server's loop, busy with HTTP, gets round to sending the next one (measured:
  one worker at 0.74× a plain Tornado handler's throughput without the queue, see
  benchmarks/serving.py). More wait here, in the server, in arrival order: a call queued
  inside a worker is lost with it if it crashes. Async calls are not limited, as in BentoML.
- Every call gets exactly one terminal answer from its worker (`result`, `error` or `end`), or
  fails when the worker dies. A caller cancelled (a timeout, a client that left) while its call
  still waits here for a worker raises `Withdrawn`: it never reaches one. Once sent, the
  cancelled caller sends `cancel` and raises `WorkContinues` at once, with a future of the
  call's `Outcome` (the executor contract, docs/internals.md): the client gets its 504 at the
  deadline, even from a call that hangs, while the call keeps its place in the worker's
  capacity until the worker's terminal answer says it really ended. That answer is dropped.
- Streams are flow-controlled: the worker sends at most `transport.WINDOW` items ahead of what
  the caller has taken, and each `CREDIT_BATCH` items taken grant it as many more.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from nbserve._runtime.execution.executor import Outcome, Withdrawn
from nbserve._runtime.execution.placement import WorkerPlacement
from nbserve._runtime.execution.traffic import WorkContinues
from nbserve._runtime.execution.workers.process import WorkerProcess
from nbserve._runtime.execution.workers.transport import (
    CREDIT_BATCH,
    CallMsg,
    CancelMsg,
    CreditMsg,
    EndMsg,
    ErrorMsg,
    ItemMsg,
    ResultMsg,
)
from nbserve._sdk.context import Context, ResponseContext
from nbserve.exceptions import ServiceUnavailable, WorkerError

__all__ = ["Call", "Router", "WorkerSlot", "WorkerState"]

WorkerState = Literal["starting", "ready", "restarting", "failed", "stopping", "stopped"]
_END = object()


@dataclass(eq=False)
class Call:
    id: int
    sync: bool
    ctx: Context | None
    future: asyncio.Future[Any]
    items: asyncio.Queue[Any] | None = None
    """For streams: the items, then `_END` or the exception."""
    taken: int = 0
    """For streams: items taken by the caller since the worker was last granted credit."""
    ended: asyncio.Future[Outcome] | None = None
    """Made when the caller abandons the call: its outcome, once the worker has finished it."""


@dataclass(eq=False)
class WorkerSlot:
    """One worker position: its placement and the process currently filling it."""

    index: int
    placement: WorkerPlacement
    state: WorkerState = "starting"
    process: WorkerProcess | None = None
    calls: dict[int, Call] = field(default_factory=dict)
    sync_busy: int = 0
    init_failures: int = 0
    crashes: int = 0
    restarts: int = 0
    ready_at: float = 0.0
    error: str | None = None
    """Why the last process ended (or its `__init__` error)."""
    respawn: asyncio.TimerHandle | None = None


class Router:
    """Routes calls to the `slots`; `unavailable()` says why no call can be served (or None)."""

    def __init__(
        self, threads: int, logger: logging.Logger, unavailable: Callable[[], str | None]
    ) -> None:
        self.threads = threads
        self.depth = 2 * threads
        """Sync calls a worker may hold: running plus queued (see the module docstring)."""
        self.slots: list[WorkerSlot] = []
        self._logger = logger
        self._unavailable = unavailable
        self._ids = itertools.count(1)
        self._waiters: deque[asyncio.Future[None]] = deque()

    # --- capacity -------------------------------------------------------------------------------
    async def acquire(self, sync: bool) -> WorkerSlot:
        """The least-loaded ready worker with room for one more call; waits here when none has."""
        woken = False  # a woken waiter goes ahead of the queue it was woken from
        while True:
            reason = self._unavailable()
            if reason is not None:
                raise ServiceUnavailable(reason)
            while self._waiters and self._waiters[0].done():  # callers that gave up
                self._waiters.popleft()
            if woken or not self._waiters or not sync:
                best: WorkerSlot | None = None
                for slot in self.slots:
                    free = slot.state == "ready" and (not sync or slot.sync_busy < self.depth)
                    if free and (best is None or len(slot.calls) < len(best.calls)):
                        best = slot
                if best is not None:
                    if sync:
                        best.sync_busy += 1
                    return best
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
                woken = True
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self.wake_one()  # pass the wake-up on, or the next in line would never get it
                raise Withdrawn from None  # it never reached a worker

    def release(self, slot: WorkerSlot, call: Call) -> None:
        if call.sync:
            slot.sync_busy -= 1
            self.wake_one()

    def wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def wake_all(self) -> None:
        """New capacity (a worker became ready): everyone waiting tries again; losers queue again."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def fail_waiters(self, exc: BaseException) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(exc)

    # --- calls ----------------------------------------------------------------------------------
    async def send(
        self, api: str, sync: bool, kwargs: dict[str, Any], ctx: Context | None, stream: bool
    ) -> tuple[WorkerSlot, Call]:
        slot = await self.acquire(sync)
        loop = asyncio.get_running_loop()
        call = Call(
            next(self._ids), sync, ctx, loop.create_future(), asyncio.Queue() if stream else None
        )
        slot.calls[call.id] = call
        process = slot.process
        assert process is not None
        message = CallMsg(kind="call", id=call.id, api=api, kwargs=kwargs, ctx=_ctx_for_worker(ctx))
        try:
            sent = process.send(message)
        except Exception:  # the arguments do not pickle: the caller's error, not the worker's
            del slot.calls[call.id]
            self.release(slot, call)
            raise
        if not sent:  # it died between being chosen and now; its reaper fails the call
            self._logger.debug("worker %d: pipe closed while sending call %d", slot.index, call.id)
        return slot, call

    async def call(self, api: str, sync: bool, kwargs: dict[str, Any], ctx: Context | None) -> Any:
        slot, call = await self.send(api, sync, kwargs, ctx, False)
        try:
            return await call.future
        except asyncio.CancelledError:
            ended = self._abandon(slot, call)
            if ended is None:  # answered meanwhile: nothing goes on
                raise
            raise WorkContinues(ended) from None

    async def stream(
        self, api: str, sync: bool, kwargs: dict[str, Any], ctx: Context | None
    ) -> AsyncIterator[Any]:
        slot, call = await self.send(api, sync, kwargs, ctx, True)
        items = call.items
        assert items is not None
        finished = False
        try:
            while True:
                item = await items.get()
                if item is _END:
                    finished = True
                    return
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                call.taken += 1
                if call.taken >= CREDIT_BATCH:
                    self._credit(slot, call)
                yield item
        except asyncio.CancelledError:  # a timeout, or the server stopping: as `call` does
            finished = True
            ended = self._abandon(slot, call)
            if ended is None:
                raise
            raise WorkContinues(ended) from None
        finally:
            if not finished:  # the client left (aclose): nobody waits for the worker's answer
                self._abandon(slot, call)

    def _credit(self, slot: WorkerSlot, call: Call) -> None:
        """The caller took `call.taken` items: the worker may send as many more."""
        if call.id in slot.calls and slot.process is not None:
            slot.process.send(CreditMsg(kind="credit", id=call.id, count=call.taken))
        call.taken = 0

    def _abandon(self, slot: WorkerSlot, call: Call) -> asyncio.Future[Outcome] | None:
        """The caller gave up: tell the worker; a future of the call's outcome, None if it ended."""
        if call.id not in slot.calls:
            return None
        call.ended = asyncio.get_running_loop().create_future()
        if slot.process is not None:  # else the reaper fails the call, which ends it
            slot.process.send(CancelMsg(kind="cancel", id=call.id))
        return call.ended

    # --- answers --------------------------------------------------------------------------------
    def deliver(self, slot: WorkerSlot, msg: ResultMsg | ErrorMsg | ItemMsg | EndMsg) -> None:
        """A `result`, `error`, `item` or `end` message from the worker in `slot`."""
        call = slot.calls.get(msg["id"])
        if call is None:
            return
        if msg["kind"] == "item":
            if call.ended is not None:
                return  # abandoned: sent before the worker read the cancel
            assert call.items is not None
            if msg["response"] is not None and call.ctx is not None:  # the first item's
                _apply_response(call.ctx.response, msg["response"])
            call.items.put_nowait(msg["value"])
            return
        del slot.calls[call.id]  # a terminal answer: the worker is done with this call
        self.release(slot, call)
        if call.ended is not None:  # abandoned: the caller is gone, this only ends the work
            if not call.ended.done():
                abandoned = msg["abandoned"] if msg["kind"] == "error" else None
                call.ended.set_result(abandoned or "finished")
            return
        outcome: Any
        if msg["kind"] == "error":
            outcome = _remote_error(msg, slot.index)
        else:
            if msg["response"] is not None and call.ctx is not None:
                _apply_response(call.ctx.response, msg["response"])
            outcome = msg["value"] if msg["kind"] == "result" else _END
        if call.items is not None:
            call.items.put_nowait(outcome)
        elif call.future.done():
            return
        elif isinstance(outcome, BaseException):
            call.future.set_exception(outcome)
        else:
            call.future.set_result(outcome)

    def fail_calls(self, slot: WorkerSlot, reason: str) -> None:
        """The worker in `slot` died: each of its calls fails at once with a 503 naming `reason`."""
        calls, slot.calls = slot.calls, {}
        slot.sync_busy = 0
        for call in calls.values():
            exc = ServiceUnavailable(f"{reason} while handling this request; it is being restarted")
            if call.ended is not None and not call.ended.done():
                call.ended.set_result("cancelled")  # it died with the worker
            if call.items is not None:
                call.items.put_nowait(exc)
            elif not call.future.done():
                call.future.set_exception(exc)


def _ctx_for_worker(ctx: Context | None) -> Context | None:
    """The request's context without `state` (per process; it may hold anything)."""
    if ctx is None:
        return None
    return Context(
        request=ctx.request,
        response=ResponseContext(),
        state={},
        temp_dir=ctx.temp_dir,
        request_id=ctx.request_id,
    )


def _apply_response(target: ResponseContext, source: ResponseContext) -> None:
    target.status_code = source.status_code
    target.headers.clear()
    target.headers.update(source.headers)
    target.cookies[:] = source.cookies


def _remote_error(msg: ErrorMsg, worker: int) -> BaseException:
    exc: BaseException | None = msg["error"]
    if not isinstance(exc, Exception):  # unpicklable, or a BaseException a future must not carry
        exc = WorkerError(f"worker {worker}: {msg['message']}", error_code=500)
    if msg["traceback"] and hasattr(exc, "add_note"):
        exc.add_note(f"raised in worker {worker}:\n{msg['traceback'].rstrip()}")
    return exc
