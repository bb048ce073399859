"""Background tasks of `@task` APIs: an in-memory store per deployment (bentoml.md §2.8).

For a task API at `<route>` the server adds (handlers in `http/tasks.py`):

| route | answer |
|---|---|
| `POST <route>/submit` | same body as `POST <route>`; `{"task_id", "status", "created_at", "executed_at"}` |
| `GET <route>/status?task_id=` | that status object; `status` is `pending`, `in_progress`, `completed`, `failed` or `canceled` |
| `GET <route>/get?task_id=` | the result, encoded as `POST <route>` would answer (an error status for a failed task); 400 while unfinished |
| `POST <route>/retry?task_id=` | submits a finished task's request again; the new task's status object |
| `PUT <route>/cancel?task_id=` | cancels a pending task (200, its status object); 400 once it runs or has finished |

A task runs through `deployment.call`, so worker processes and adaptive batching apply as for a
direct call. It is background work: `traffic.timeout` and `traffic.max_concurrency` govern
requests and do not apply (nor do they in BentoML, which runs tasks after the response). Per
API, at most `traffic.concurrency` tasks run at once when the service sets it (BentoML's hint
for task services), else `threads` × workers (the calls the executor can really run side by
side), or `max_batch_size` × workers for a batchable API (enough to fill its batches). The
others wait, `pending`, in submission order, and only they can be canceled (a call running in
a thread or a worker process cannot be interrupted).

Differences from BentoML, on purpose: the body is validated at submit (a bad one is a 400 then,
not a failed task later); cancel really cancels (BentoML's local server always answers 400,
#5141); `retry` also takes a canceled task; ids of one API are unknown to another's routes.

Retention (BentoML keeps SQLite rows 24 h and wipes them at each start): memory only, per
deployment, so a restart or a hot swap forgets tasks and a stop cancels those still pending.
Finished tasks are kept for `RETENTION_S` (1 h), at most `MAX_FINISHED` (1000) of them and
`MAX_BYTES` (256 MiB) of stored requests and results; the oldest finished go first, and a
forgotten id is a 404. Each task keeps its request body for `retry`; unfinished tasks are
limited to `MAX_UNFINISHED` (1000) and `MAX_BYTES` of bodies, past which a submit is a 429.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

from nbserve._runtime.execution.traffic import WorkContinues
from nbserve._runtime.http.errors import error_body, error_for
from nbserve._sdk.context import Context, RequestInfo, current_context
from nbserve.exceptions import ServiceUnavailable, TooManyRequests

if TYPE_CHECKING:
    from nbserve._sdk.method import APIMethod
    from nbserve._sdk.service import Service

__all__ = [
    "MAX_BYTES",
    "MAX_FINISHED",
    "MAX_UNFINISHED",
    "RETENTION_S",
    "TaskRecord",
    "TaskRequest",
    "TaskResult",
    "TaskStatus",
    "TaskStore",
    "task_concurrency",
]

TaskStatus = Literal["pending", "in_progress", "completed", "failed", "canceled"]
CallFn = Callable[["APIMethod[..., Any]", dict[str, Any], Context], Awaitable[Any]]

RETENTION_S = 3600.0
MAX_FINISHED = 1000
MAX_UNFINISHED = 1000
MAX_BYTES = 256 * 2**20


def task_concurrency(service: Service[Any], workers: int | None) -> dict[str, int]:
    """How many tasks of each `@task` API may run at once (see the module docstring)."""
    config = service.config
    traffic = config.raw.get("traffic")
    wanted = traffic.get("concurrency") if isinstance(traffic, dict) else None
    if not (isinstance(wanted, int) and not isinstance(wanted, bool) and wanted >= 1):
        wanted = None
    count = max(workers or config.worker_count or 1, 1)
    limits: dict[str, int] = {}
    for api in service.apis.values():
        if not api.is_task:
            continue
        if wanted is not None:
            limits[api.name] = wanted
        elif api.batchable:  # enough to fill a batch on every worker
            limits[api.name] = api.max_batch_size * count
        else:
            limits[api.name] = config.threads * count
    return limits


@dataclass(frozen=True)
class TaskRequest:
    """What a task was submitted with, kept for `retry` (decoded again, so files are saved again)."""

    body: bytes
    content_type: str
    info: RequestInfo
    request_id: str


@dataclass(frozen=True)
class TaskResult:
    """The response `/get` replays. `ctx` is set when the API takes a `Context`, whose
    `ctx.response` (status, headers, cookies) is applied to the replay as to a direct call."""

    status: int
    body: bytes
    media_type: str
    headers: dict[str, str] = field(default_factory=dict)
    ctx: Context | None = None


@dataclass(eq=False)
class TaskRecord:
    """One submitted task."""

    id: str
    api: APIMethod[..., Any]
    request: TaskRequest
    created_at: datetime
    status: TaskStatus = "pending"
    executed_at: datetime | None = None
    result: TaskResult | None = None
    finished_at: float | None = None
    """`time.monotonic()` when it finished; retention counts from here."""

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed", "canceled")

    @property
    def size(self) -> int:
        """Bytes this record holds: its request body and its result body."""
        return len(self.request.body) + (len(self.result.body) if self.result else 0)

    def describe(self) -> dict[str, Any]:
        """The status object of `/status`, `/submit`, `/retry` and `/cancel`."""
        return {
            "task_id": self.id,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "executed_at": self.executed_at.isoformat() if self.executed_at else None,
        }


class TaskStore:
    """The tasks of one deployment: submitted, run in the background, kept for a while."""

    def __init__(
        self,
        call: CallFn,
        *,
        concurrency: dict[str, int],
        logger: logging.Logger,
        retention_s: float = RETENTION_S,
        max_finished: int = MAX_FINISHED,
        max_unfinished: int = MAX_UNFINISHED,
        max_bytes: int = MAX_BYTES,
        expose_errors: bool = False,
    ) -> None:
        self._call = call
        self.expose_errors = expose_errors
        """A failed task's 500 names the exception (a server in a kernel, `--debug`; errors.py)."""
        self.concurrency = concurrency
        self._logger = logger
        self.retention_s = retention_s
        self.max_finished = max_finished
        self.max_unfinished = max_unfinished
        self.max_bytes = max_bytes
        self._records: dict[str, TaskRecord] = {}
        self._finished: collections.OrderedDict[str, TaskRecord] = collections.OrderedDict()
        self._finished_bytes = 0
        self._unfinished_bytes = 0
        self._runners: dict[str, asyncio.Task[bool]] = {}  # strong refs: asyncio keeps weak ones
        self._slots: dict[str, asyncio.Semaphore] = {}  # per API, made on first use
        self._closed = False

    def __len__(self) -> int:
        return len(self._records)

    # --- submitting -----------------------------------------------------------------------------
    def submit(
        self,
        api: APIMethod[..., Any],
        kwargs: dict[str, Any],
        ctx: Context,
        request: TaskRequest,
        cleanup: Callable[[], None],
    ) -> TaskRecord:
        """Start a task (on the running loop); `cleanup` runs once its work has ended.

        Raises `ServiceUnavailable` once the store stops, `TooManyRequests` when full.
        """
        if self._closed:
            msg = f"{api.name}: the service is stopping and takes no new tasks; submit again once it runs"
            raise ServiceUnavailable(msg)
        size = len(request.body)
        if self._runners and (
            len(self._runners) >= self.max_unfinished
            or self._unfinished_bytes + size > self.max_bytes
        ):
            msg = f"Too many tasks: {len(self._runners)} task(s) holding {self._unfinished_bytes} bytes of requests are waiting or running (limits: {self.max_unfinished} tasks, {self.max_bytes} bytes); retry once some have finished"
            raise TooManyRequests(msg)
        record = TaskRecord(uuid.uuid4().hex, api, request, datetime.now(timezone.utc))
        self._records[record.id] = record
        self._unfinished_bytes += size
        runner = asyncio.get_running_loop().create_task(self._run(record, kwargs, ctx, cleanup))
        # A callback, not a `finally`: a task cancelled before its first step never runs its body.
        runner.add_done_callback(functools.partial(self._ended, record, cleanup))
        self._runners[record.id] = runner
        return record

    def get(self, task_id: str) -> TaskRecord | None:
        self._evict()
        return self._records.get(task_id)

    def cancel(self, record: TaskRecord) -> bool:
        """Cancel a pending task; True if it is canceled now (or was), False if it ran."""
        if record.status == "canceled":
            return True
        if record.status != "pending":
            return False
        self._finish(record, "canceled", None)
        runner = self._runners.get(record.id)
        if runner is not None:
            runner.cancel()  # it only waits for a slot
        return True

    # --- running --------------------------------------------------------------------------------
    async def _run(
        self,
        record: TaskRecord,
        kwargs: dict[str, Any],
        ctx: Context,
        cleanup: Callable[[], None],
    ) -> bool:
        """Run the task once a slot is free; True when its cleanup waits for a thread to end."""
        name = record.api.name
        slots = self._slots.get(name)
        if slots is None:
            slots = self._slots[name] = asyncio.Semaphore(self.concurrency.get(name, 1))
        async with slots:
            if record.status != "pending":  # canceled while it waited
                return False
            record.status = "in_progress"
            record.executed_at = datetime.now(timezone.utc)
            current_context.set(ctx)
            try:
                value = await self._call(record.api, kwargs, ctx)
                payload = record.api.output.encode(value)
            except WorkContinues as running:  # stop() cancelled a call running in a thread
                running.future.add_done_callback(lambda _: cleanup())
                self._finish(record, "canceled", None)
                return True
            except Exception as exc:
                self._finish(record, "failed", self._failure(record, exc))
                return False
            keep = ctx if record.api.ctx_param is not None else None
            status = keep.response.status_code if keep is not None else 200
            result = TaskResult(status, payload.body, payload.media_type, payload.headers, keep)
            # As in BentoML, a task whose response has an error status has failed.
            self._finish(record, "completed" if status < 400 else "failed", result)
            return False

    def _ended(
        self, record: TaskRecord, cleanup: Callable[[], None], runner: asyncio.Task[bool]
    ) -> None:
        if self._runners.get(record.id) is runner:
            del self._runners[record.id]
        self._unfinished_bytes -= len(record.request.body)
        if not record.finished:  # cancelled by stop()
            self._finish(record, "canceled", None)
        error = None if runner.cancelled() else runner.exception()
        if error is not None:  # a bug here, not in the API (its errors make a failed task)
            self._logger.error(
                "task %s of %s: runner failed", record.id, record.api.name, exc_info=error
            )
        if runner.cancelled() or error is not None or not runner.result():
            cleanup()

    def _failure(self, record: TaskRecord, exc: Exception) -> TaskResult:
        request_id = record.request.request_id
        status, message, detail, is_bug = error_for(exc, request_id, expose=self.expose_errors)
        if is_bug:
            self._logger.error(
                "task %s of %s (request %s) raised %s",
                record.id,
                record.api.name,
                request_id,
                type(exc).__name__,
                exc_info=exc,
            )
        return TaskResult(status, error_body(message, detail), "application/json")

    def _finish(self, record: TaskRecord, status: TaskStatus, result: TaskResult | None) -> None:
        record.status = status
        record.result = result
        record.finished_at = time.monotonic()
        self._finished[record.id] = record
        self._finished_bytes += record.size
        self._evict()

    def _evict(self) -> None:
        """Forget the oldest finished tasks past the retention time, count or byte budget."""
        finished = self._finished
        if not finished:
            return
        horizon = time.monotonic() - self.retention_s
        while finished:
            oldest = next(iter(finished.values()))
            if (
                len(finished) <= self.max_finished
                # The newest finished task stays, even alone over the budget.
                and (self._finished_bytes <= self.max_bytes or len(finished) == 1)
                and (oldest.finished_at or 0.0) >= horizon
            ):
                break
            finished.popitem(last=False)
            self._records.pop(oldest.id, None)
            self._finished_bytes -= oldest.size

    # --- stopping -------------------------------------------------------------------------------
    async def stop(self, timeout: float) -> None:
        """Take no new tasks, cancel the pending ones, give running ones `timeout` seconds."""
        self._closed = True
        for record in list(self._records.values()):
            if record.status == "pending":
                self.cancel(record)
        runners = set(self._runners.values())
        if not runners:
            return
        _, late = await asyncio.wait(runners, timeout=max(timeout, 0.0))
        if late:
            self._logger.warning("%d task(s) still running at stop; canceling them", len(late))
            for runner in late:
                runner.cancel()
            await asyncio.wait(late, timeout=1.0)
