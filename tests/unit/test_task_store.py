"""The task store's bounds and bookkeeping, in-process (the HTTP side: test_server_tasks.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import nbserve
from nbserve._runtime.execution.task_store import (
    TaskRecord,
    TaskRequest,
    TaskStore,
    task_concurrency,
)
from nbserve._runtime.handle import as_service
from nbserve._sdk.context import Context, RequestInfo
from nbserve.exceptions import ServiceUnavailable, TooManyRequests


@nbserve.service(threads=3, traffic={"timeout": 5})
class Store:
    @nbserve.task
    def echo(self, text: str) -> str:
        return text

    @nbserve.task(batchable=True, max_batch_size=16)
    def batch(self, xs: list[int]) -> list[int]:
        return xs

    @nbserve.api
    def plain(self) -> str:
        return ""


STORE = as_service(Store)  # `@service` is typed as returning the class
ECHO = STORE.apis["echo"]
LOG = logging.getLogger("nbserve.test.tasks")


async def echo(api: Any, kwargs: dict[str, Any], ctx: Context) -> Any:
    return kwargs["text"]


def store(call: Callable[..., Awaitable[Any]] = echo, **limits: Any) -> TaskStore:
    return TaskStore(call, concurrency={"echo": 1}, logger=LOG, **limits)


def submit(tasks: TaskStore, text: str, cleaned: list[str] | None = None) -> TaskRecord:
    request = TaskRequest(text.encode(), "application/json", RequestInfo(), "request-id")
    cleanup = (lambda: cleaned.append(text)) if cleaned is not None else (lambda: None)
    return tasks.submit(ECHO, {"text": text}, Context(), request, cleanup)


async def settle(*records: TaskRecord) -> None:
    """Until the records have finished and their runners have ended (a loop turn later)."""
    for _ in range(1000):
        if all(r.finished for r in records):
            await asyncio.sleep(0)
            return
        await asyncio.sleep(0)
    raise AssertionError([r.status for r in records])


def test_keeps_at_most_max_finished() -> None:
    async def scenario() -> None:
        tasks = store(max_finished=2)
        records = [submit(tasks, t) for t in ("a", "b", "c")]
        await settle(*records)
        assert [tasks.get(r.id) for r in records] == [None, records[1], records[2]]
        assert records[2].result is not None
        assert records[2].result.body == b"c"

    asyncio.run(scenario())


def test_forgets_finished_tasks_after_the_retention_time() -> None:
    async def scenario() -> None:
        tasks = store(retention_s=0.05)
        record = submit(tasks, "a")
        await settle(record)
        assert tasks.get(record.id) is record
        await asyncio.sleep(0.1)
        assert tasks.get(record.id) is None
        assert len(tasks) == 0

    asyncio.run(scenario())


def test_byte_budget_evicts_the_oldest_but_keeps_the_newest() -> None:
    async def scenario() -> None:
        tasks = store(max_bytes=10)  # each record holds 4 + 4 bytes (request and result)
        first, second = submit(tasks, "aaaa"), submit(tasks, "bbbb")
        await settle(first, second)
        assert tasks.get(first.id) is None
        assert tasks.get(second.id) is second  # alone over the budget, but the newest

    asyncio.run(scenario())


def test_unfinished_tasks_are_bounded() -> None:
    async def scenario() -> None:
        release = asyncio.Event()

        async def blocked(api: Any, kwargs: dict[str, Any], ctx: Context) -> Any:
            await release.wait()
            return kwargs["text"]

        tasks = store(blocked, max_unfinished=2)
        first, second = submit(tasks, "a"), submit(tasks, "b")
        with pytest.raises(TooManyRequests, match=r"2 task\(s\) .* are waiting or running"):
            submit(tasks, "c")
        release.set()
        await settle(first, second)
        await settle(submit(tasks, "d"))  # room again

    asyncio.run(scenario())


def test_cancel_before_start_still_cleans_up() -> None:
    async def scenario() -> None:
        tasks = store()
        cleaned: list[str] = []
        record = submit(tasks, "a", cleaned)
        assert tasks.cancel(record)  # its runner has not even started
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert (record.status, cleaned, record.executed_at) == ("canceled", ["a"], None)

    asyncio.run(scenario())


def test_stop_cancels_pending_and_overdue_tasks(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> tuple[TaskRecord, TaskRecord, list[str]]:
        async def forever(api: Any, kwargs: dict[str, Any], ctx: Context) -> Any:
            await asyncio.Event().wait()

        tasks = store(forever)
        cleaned: list[str] = []
        running, pending = submit(tasks, "a", cleaned), submit(tasks, "b", cleaned)
        await asyncio.sleep(0.01)
        assert (running.status, pending.status) == ("in_progress", "pending")
        await tasks.stop(0.05)
        with pytest.raises(ServiceUnavailable, match=r"stopping and takes no new tasks"):
            submit(tasks, "c")
        return running, pending, cleaned

    with caplog.at_level(logging.WARNING, logger=LOG.name):
        running, pending, cleaned = asyncio.run(scenario())
    assert (running.status, pending.status) == ("canceled", "canceled")
    assert sorted(cleaned) == ["a", "b"]
    assert [r.getMessage() for r in caplog.records] == [
        "1 task(s) still running at stop; canceling them"
    ]


def test_concurrency_per_task_api() -> None:
    assert task_concurrency(STORE, None) == {"echo": 3, "batch": 16}
    assert task_concurrency(STORE, 2) == {"echo": 6, "batch": 32}

    @nbserve.service(traffic={"concurrency": 1})
    class Hinted:
        @nbserve.task
        def one(self) -> str:
            return ""

    assert task_concurrency(as_service(Hinted), 4) == {"one": 1}
