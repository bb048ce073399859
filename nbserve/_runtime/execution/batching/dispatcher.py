"""The adaptive batch dispatcher: one per batchable API, in the server process, feeding all workers.

Each request's value is already a batch of its own (`rows` ≥ 1). The dispatcher queues them
and sends merged batches of at most `max_batch_size` rows to `run_batch`, keeping at most one
batch in flight per worker slot (`slots()`). How it decides, and why:

- **A free slot is used at once, unless waiting pays.** When the slots are busy, requests pile up
  and the next free slot takes all of them (up to `max_batch_size`): under load batches grow by
  themselves, and at light load a request waits for no one. Waiting for more rows while a slot
  is free only raises throughput when more rows arrive during a batch's fixed cost `a` than are
  already queued: dispatching `n` rows now and `n + λδ` rows after waiting `δ` gives
  `(n + λδ) / (δ + a + b(n + λδ))` vs `n / (a + bn)` rows per second, and the first is larger
  exactly when `λ·a > n` (λ: arrival rate in rows/s). So the dispatcher holds only then, only
  when the free slot is the last one, only for about the time the missing rows take to arrive
  (at most `a`, the ski-rental bound), and never past `max_latency_ms` (below).
- **`max_latency_ms` bounds the wait for company, not the wait for a worker.** The dispatcher
  never holds a request for more rows longer than `max_latency_ms` after it arrived (the hold
  above is usually much shorter). A request that finds every worker busy waits its turn: it is
  not turned away because a deadline passed. BentoML treats `max_latency_ms` as a deadline
  and answers 503 "Service Busy" to requests that would finish late (reference/bentoml.md
  §4.3; its users report it as a bug, BentoML #3200, #1530): with a 100 ms model and
  `max_latency_ms=20`, most requests of a light load fail there. Here every one is served.
- **Overload is shed by a bounded queue**: at most `max_queue_batches` full batches per worker
  slot wait (`max_batch_size × slots × max_queue_batches` rows); past that a request gets 503
  at once, naming the queue and its size, and `on_shed(reason)` is told (metrics, log). How
  long a request may wait in all is `traffic.timeout` (504), which cancels it in the queue.
- **A caller that stops waiting takes its queued rows out at once** (its client left, or its
  deadline passed): they no longer count against the queue bound nor in a hold's arithmetic,
  and never join a batch. A request none of whose rows had left the queue raises `Withdrawn`
  (it never ran, and `/metrics` says so); one already in a batch raises a plain
  `CancelledError`: that batch runs on for its other requests, its answer for this one dropped.
- **A failing batch falls back to one call per request.** When the requests of a batch cannot be
  merged (rows of different widths, say), or the API raises on the merged batch, each request
  is run on its own, so one bad request fails alone with its own error and the others are
  answered. Failures of the machinery (503/504: a worker died, the server stops) are not
  retried.
- Batch cost `a + b·rows` is learnt online (`CostModel`).

Everything runs on the server's event loop; nothing here is thread-safe.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from nbserve._runtime.execution.batching.containers import batch_size, merge, slice_rows, split
from nbserve._runtime.execution.batching.cost import CostModel
from nbserve._runtime.execution.batching.row_queue import Piece, Request, RowQueue
from nbserve._runtime.execution.executor import Withdrawn
from nbserve.exceptions import NbserveError, ServiceUnavailable

__all__ = ["Dispatcher"]

# The arrival rate is measured over this trailing window: long enough to smooth a burst,
# short enough that a silence (or a new burst) shows within a tenth of a second.
_RATE_WINDOW_S = 0.1

MAX_QUEUE_BATCHES = 16
"""Default queue bound, in full batches per worker slot: at 100 ms a batch, 1.6 s of backlog."""


class Dispatcher:
    """Adaptive batching for one API. `await submit(value)` returns that request's rows of the output.

    `run_batch(merged)` runs one batch (on a worker) and returns its output; `slots()` is how
    many batches may be in flight (the number of live workers); `observe(rows, queue_wait_s)`
    is told each batch as it leaves (metrics); `on_shed(reason)` each request turned away
    (`"queue_full"`, `"stopping"`). `name` is used in messages.
    """

    def __init__(
        self,
        run_batch: Callable[[Any], Awaitable[Any]],
        *,
        name: str,
        max_batch_size: int,
        max_latency_ms: float,
        batch_dim: tuple[int, int] = (0, 0),
        slots: Callable[[], int] = lambda: 1,
        observe: Callable[[int, float], None] | None = None,
        on_shed: Callable[[str, str], None] | None = None,
        max_queue_batches: int = MAX_QUEUE_BATCHES,
    ) -> None:
        self._run_batch = run_batch
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_latency = max_latency_ms / 1000.0
        self._in_dim, self._out_dim = batch_dim
        self._slots = slots
        self._observe = observe
        self._on_shed = on_shed
        self.max_queue_batches = max_queue_batches
        self.cost = CostModel()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue = RowQueue()
        self._in_flight: dict[asyncio.Task[None], float] = {}
        """Batches running now and when each is expected to end (loop time)."""
        self._hold: asyncio.TimerHandle | None = None
        self._hold_until = 0.0
        self._hold_over = False
        self._arrivals: deque[tuple[float, int]] = deque()
        self._window_rows = 0
        self._closing = False
        self._idle: asyncio.Event | None = None
        self.batches = 0
        self.rows = 0
        self.shed = 0
        """Requests turned away with 503 (queue full, or the deployment stopping)."""
        self.fallbacks = 0
        """Batches that failed as a whole and were run again one request at a time."""

    # --- the caller's side ---------------------------------------------------------------------
    async def submit(self, value: Any) -> Any:
        """Queue one request's batch and wait for its part of the output."""
        if self._closing:
            msg = f"{self.name}: the service is stopping and takes no new requests; retry against the new deployment"
            self._shed("stopping", msg)
        loop = self._loop or self._bind()
        rows = batch_size(value, self._in_dim)
        if rows == 0:  # nothing to batch with; the API decides what an empty batch returns
            return await self._run_batch(value)
        now = loop.time()
        self._note_arrival(now, rows)
        self._admit(rows)
        future: asyncio.Future[Any] = loop.create_future()
        # This piece stays the request's one queued piece: a split takes rows off its head.
        piece = self._queue.push(Request(value, rows, future, now))
        self._pump()
        try:
            return await future
        except asyncio.CancelledError:
            never_ran = self._queue.withdraw(piece)
            if self._queue.head_is(piece):  # dropped now: a drain must not wait on it
                self._pump()
            if never_ran:
                raise Withdrawn from None
            raise

    def wake(self) -> None:
        """Capacity changed (a worker became ready): dispatch if a slot is now free."""
        if self._loop is not None and self._queue:
            self._pump()

    async def close(self, timeout: float = 10.0) -> None:
        """Take no new requests, send what is queued without holding, wait for the batches in flight.

        The wait is bounded: a batch still running after `timeout` s belongs to requests that
        have timed out already, and the executor's own stop deals with the work.
        """
        self._closing = True
        if self._loop is None:
            return
        self._hold_over = True
        try:
            self._pump()
            await asyncio.wait_for(self._drained(), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            self._cancel_timers()

    async def _drained(self) -> None:
        while self._queue or self._in_flight:
            self._idle = asyncio.Event()
            await self._idle.wait()

    def stats(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "rows": self.rows,
            "mean_batch_rows": self.rows / self.batches if self.batches else 0.0,
            "queued_rows": self._queue.rows,
            "in_flight": len(self._in_flight),
            "queue_limit_rows": self.queue_limit(),
            "shed": self.shed,
            "fallbacks": self.fallbacks,
            "cost_fixed_ms": self.cost.a * 1e3,
            "cost_per_row_ms": self.cost.b * 1e3,
        }

    def _bind(self) -> asyncio.AbstractEventLoop:
        self._loop = asyncio.get_running_loop()
        return self._loop

    # --- estimates -----------------------------------------------------------------------------
    def _note_arrival(self, now: float, rows: int) -> None:
        self._arrivals.append((now, rows))
        self._window_rows += rows
        self._trim(now)

    def _trim(self, now: float) -> None:
        arrivals = self._arrivals
        while arrivals and now - arrivals[0][0] > _RATE_WINDOW_S:
            self._window_rows -= arrivals.popleft()[1]

    def _rate(self, now: float) -> float:
        """Arrival rate in rows/s over the trailing window; 0 for a lone request after a silence."""
        self._trim(now)
        if len(self._arrivals) < 2:
            return 0.0
        first_time, first_rows = self._arrivals[0]
        # Rows after the first arrival, over the time since it: n equally spaced arrivals
        # give exactly 1/gap, and the time since the last arrival counts (silence lowers it).
        return (self._window_rows - first_rows) / max(now - first_time, 1e-6)

    def queue_limit(self) -> int:
        """How many rows may wait: `max_queue_batches` full batches per worker slot."""
        return self.max_queue_batches * self.max_batch_size * max(1, self._slots())

    def _admit(self, rows: int) -> None:
        """Turn a request away now (503) when the queue is full: the service is overloaded."""
        limit = self.queue_limit()
        # A request bigger than the whole limit is still taken into an empty queue (it is split).
        if self._queue.rows and self._queue.rows + rows > limit:
            msg = (
                f"{self.name} is overloaded: the batch queue is full ({self._queue.rows} rows waiting, "
                f"limit {limit} = {self.max_queue_batches} batches of max_batch_size={self.max_batch_size} "
                f"per worker); retry later, or add workers"
            )
            self._shed("queue_full", msg)

    def _shed(self, reason: str, message: str) -> None:
        self.shed += 1
        if self._on_shed is not None:
            self._on_shed(reason, message)
        raise ServiceUnavailable(message, detail={"reason": reason})

    def _should_hold(self, now: float, slots: int) -> bool:
        """Whether to leave the free slot idle a little longer to collect more rows (see module doc)."""
        if self._hold_over or not self.cost.trained:
            return False
        if slots - len(self._in_flight) > 1:
            return False  # spare capacity: another slot takes the next arrival
        rate, a = self._rate(now), self.cost.a
        if rate * a <= self._queue.rows:
            return False
        if self._hold is None:  # a new hold: long enough for the missing rows, at most `a`
            collect = a - self._queue.rows / rate
            latest = self._queue.oldest() + self.max_latency  # the promise
            self._hold_until = min(now + collect, latest)
        return now < self._hold_until

    # --- dispatching ---------------------------------------------------------------------------
    def _pump(self) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        slots = max(1, self._slots())
        while self._queue:
            self._queue.drop_answered()
            if not self._queue or len(self._in_flight) >= slots:
                break
            if self._queue.rows < self.max_batch_size and self._should_hold(now, slots):
                if self._hold is None:
                    self._hold = loop.call_at(self._hold_until, self._end_hold)
                break
            self._launch(now)
        if not self._queue:
            self._cancel_timers()
            if not self._in_flight and self._idle is not None:
                self._idle.set()

    def _end_hold(self) -> None:
        self._hold = None
        self._hold_over = True
        self._pump()

    def _launch(self, now: float) -> None:
        assert self._loop is not None
        pieces, rows = self._queue.take(self.max_batch_size)
        if not pieces:
            return
        if self._hold is not None:
            self._hold.cancel()
            self._hold = None
        if not self._closing:
            self._hold_over = False
        self.batches += 1
        self.rows += rows
        if self._observe is not None:
            self._observe(rows, now - pieces[0].request.enqueued)
        values = [  # each value was checked by batch_size() on submit: slicing cannot fail
            p.request.value
            if p.rows == p.request.rows
            else slice_rows(p.request.value, p.start, p.stop, self._in_dim)
            for p in pieces
        ]
        try:
            batch = merge(values, self._in_dim)
        except Exception:  # e.g. rows of different widths: each request runs on its own
            self.fallbacks += 1
            task = self._loop.create_task(self._run_alone(list(zip(pieces, values, strict=True))))
        else:
            task = self._loop.create_task(self._run(pieces, values, rows, batch))
        self._in_flight[task] = now + self.cost.estimate(rows)

    async def _run(self, pieces: list[Piece], values: list[Any], rows: int, batch: Any) -> None:
        loop = self._loop
        assert loop is not None
        started = loop.time()
        try:
            try:
                output = await self._run_batch(batch)
                outputs = split(output, [p.rows for p in pieces], self._out_dim)
            except Exception as exc:
                if len({id(p.request) for p in pieces}) == 1 or not _retryable(exc):
                    for p in pieces:
                        _fail(p.request, exc)
                else:  # which request broke the batch? each runs alone and keeps its own error
                    self.fallbacks += 1
                    await self._run_alone(list(zip(pieces, values, strict=True)), done=False)
            else:
                self.cost.observe(rows, loop.time() - started)
                for p, out in zip(pieces, outputs, strict=True):
                    self._answer(p, out)
        except asyncio.CancelledError:  # the loop is going away; nobody may be left waiting
            self._cancelled(pieces)
            raise
        finally:
            self._done()

    async def _run_alone(self, pieces: list[tuple[Piece, Any]], *, done: bool = True) -> None:
        """Run each piece as a batch of its own, one after the other, on the slot already held."""
        try:
            for piece, value in pieces:
                if piece.request.future.done():
                    continue  # the caller gave up (timeout) meanwhile, or another piece failed
                try:
                    (output,) = split(await self._run_batch(value), [piece.rows], self._out_dim)
                except Exception as exc:
                    _fail(piece.request, exc)
                else:
                    self._answer(piece, output)
        except asyncio.CancelledError:
            self._cancelled([p for p, _ in pieces])
            raise
        finally:
            if done:
                self._done()

    def _cancelled(self, pieces: list[Piece]) -> None:
        for p in pieces:
            _fail(
                p.request,
                ServiceUnavailable(
                    f"{self.name}: the batch was cancelled because the server is stopping"
                ),
            )

    def _done(self) -> None:
        """A batch task ended: its slot is free again."""
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.pop(task, None)
        self._pump()

    def _answer(self, piece: Piece, output: Any) -> None:
        request = piece.request
        if request.future.done():
            return
        if piece.rows == request.rows:
            request.future.set_result(output)
            return
        request.parts[piece.start] = output
        request.answered += piece.rows
        if request.answered == request.rows:
            try:
                result = merge([request.parts[k] for k in sorted(request.parts)], self._out_dim)
            except Exception as exc:
                request.future.set_exception(exc)
            else:
                request.future.set_result(result)

    def _cancel_timers(self) -> None:
        if self._hold is not None:
            self._hold.cancel()
            self._hold = None

    def __repr__(self) -> str:
        return f"<Dispatcher {self.name}: {self._queue.rows} rows queued, {len(self._in_flight)} in flight, {self.cost!r}>"


def _retryable(exc: Exception) -> bool:
    """Whether one call per request could succeed where the batch failed.

    Not when the machinery failed (503: a worker died or the server stops; 504: out of time):
    running the requests again would only fail them later, or not at all where it must not.
    """
    return not (isinstance(exc, NbserveError) and exc.error_code in (503, 504))


def _fail(request: Request, exc: BaseException) -> None:
    if not request.future.done():
        request.future.set_exception(exc)
