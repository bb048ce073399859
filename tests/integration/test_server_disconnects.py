"""Clients that disconnect before their answer: their queued work is withdrawn (waiting for a
thread, a worker or a batch), running async work is cancelled, running sync work runs to its end
with its result dropped; `/metrics` counts each."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from worker_services import Blocking, Waiting

import nbserve
from nbserve.testing import running_service

pytestmark = pytest.mark.slow

started = threading.Event()
release = threading.Event()
cancelled = threading.Event()
closed = threading.Event()


@nbserve.service(threads=1)
class Busy:
    """Inline: one API thread, so all but the first call of `block` queue behind it."""

    @nbserve.api
    def block(self) -> str:
        started.set()
        release.wait(60)
        return "done"

    @nbserve.api
    async def wait(self) -> str:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    @nbserve.api(batchable=True, max_batch_size=4)
    def block_rows(self, x: list[int]) -> list[int]:
        """Batched on the one slot the inline executor has: the first call's batch holds it."""
        started.set()
        release.wait(60)
        return x


@nbserve.service(threads=2)
class Streamer:
    @nbserve.api
    def items(self) -> Iterator[str]:
        try:
            yield "first"
            started.set()
            release.wait(60)
            yield "second"
        finally:
            closed.set()


def wait_until(condition: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def sample(url: str, name: str, **labels: str) -> float:
    """The value of the metric sample `name` whose labels include `labels` (0 when absent)."""
    text = httpx.get(url + "/metrics").text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and labels.items() <= s.labels.items():
                return float(s.value)
    return 0.0


def abandoned(url: str, route: str, outcome: str) -> float:
    return sample(url, "nbserve_abandoned_work_total", endpoint=route, outcome=outcome)


def in_progress(url: str, route: str) -> float:
    return sample(url, "bentoml_service_request_in_progress", endpoint=route)


def batches(url: str, api: str) -> tuple[float, float]:
    """Rows and batches the dispatcher of `api` has sent out."""
    rows = sample(url, "bentoml_service_adaptive_batch_size_sum", method_name=api)
    return rows, sample(url, "bentoml_service_adaptive_batch_size_count", method_name=api)


def send_and_hold(
    port: int, route: str, count: int, payload: dict[str, Any] | None = None
) -> list[socket.socket]:
    """`count` clients that send a request and then wait for an answer they never read."""
    body = json.dumps(payload or {}).encode()
    request = (
        f"POST {route} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    clients = []
    for _ in range(count):
        client = socket.create_connection(("127.0.0.1", port))
        client.sendall(request)
        clients.append(client)
    return clients


def test_inline_queued_work_of_clients_that_left_is_withdrawn_and_counted() -> None:
    started.clear()
    release.clear()
    with running_service(Busy) as handle:
        url = handle.url
        clients = send_and_hold(handle.port, "/block", 20)
        wait_until(lambda: in_progress(url, "/block") == 20, "20 requests in flight")
        wait_until(started.is_set, "the first call to run")
        for client in clients:
            client.close()
        # 19 were queued for the one API thread: they never run.
        wait_until(lambda: abandoned(url, "/block", "withdrawn") == 19, "19 withdrawn")
        assert abandoned(url, "/block", "finished") == 0  # the running one cannot be stopped
        release.set()
        wait_until(lambda: abandoned(url, "/block", "finished") == 1, "its result dropped")
        r = httpx.post(url + "/block", json={}, timeout=30)
        assert (r.status_code, r.text) == (200, "done")  # nothing left in the queue before it


def test_inline_running_async_work_of_a_client_that_left_is_cancelled() -> None:
    started.clear()
    cancelled.clear()
    with running_service(Busy) as handle:
        (client,) = send_and_hold(handle.port, "/wait", 1)
        wait_until(started.is_set, "the call to run")
        client.close()
        wait_until(cancelled.is_set, "the coroutine to be cancelled")
        wait_until(lambda: abandoned(handle.url, "/wait", "cancelled") == 1, "the count")
        wait_until(lambda: in_progress(handle.url, "/wait") == 0, "the request to end")


def test_worker_queued_work_of_clients_that_left_is_withdrawn_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One worker, one thread: it holds two calls (one running, one in its pipe), the other 18
    wait in the server and are withdrawn; the two sent run, and their results are dropped."""
    monkeypatch.setenv("NBSERVE_TEST_EVENTS", str(tmp_path))
    with running_service(Blocking) as handle:
        url = handle.url
        clients = send_and_hold(handle.port, "/block", 20)
        wait_until(lambda: in_progress(url, "/block") == 20, "20 requests in flight")
        wait_until(lambda: list(tmp_path.glob("block-started-*")), "the first call to run")
        for client in clients:
            client.close()
        wait_until(lambda: abandoned(url, "/block", "withdrawn") == 18, "18 withdrawn")
        (tmp_path / "release").touch()
        wait_until(lambda: abandoned(url, "/block", "finished") == 2, "two results dropped")
        r = httpx.post(url + "/block", json={}, timeout=30)
        assert (r.status_code, r.text) == (200, "done")


def test_a_client_that_leaves_mid_stream_closes_the_generator_after_its_running_step() -> None:
    """The step running in a thread cannot be interrupted; the generator is closed after it
    (never while it executes, which would fail), and nothing is logged as an error."""
    for event in (started, release, closed):
        event.clear()
    with running_service(Streamer) as handle:
        (client,) = send_and_hold(handle.port, "/items", 1)
        received = b""
        while b"first" not in received:
            received += client.recv(4096)
        wait_until(started.is_set, "the second step to run")
        client.close()
        wait_until(lambda: in_progress(handle.url, "/items") == 0, "the request to end")
        assert not closed.is_set()  # its step still runs
        release.set()
        wait_until(closed.is_set, "the generator to be closed")
        wait_until(lambda: abandoned(handle.url, "/items", "finished") == 1, "the count")
        assert not [line for line in handle.logs(100) if "ERROR" in line or "failed" in line]


def test_worker_async_work_of_a_client_that_left_is_cancelled_in_the_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBSERVE_TEST_EVENTS", str(tmp_path))
    with running_service(Waiting) as handle:
        (client,) = send_and_hold(handle.port, "/wait", 1)
        wait_until(lambda: list(tmp_path.glob("wait-started-*")), "the call to run")
        client.close()
        wait_until(lambda: list(tmp_path.glob("wait-cancelled-*")), "the worker to cancel it")
        wait_until(lambda: abandoned(handle.url, "/wait", "cancelled") == 1, "the count")


@pytest.mark.parametrize("workers", [None, 1], ids=["inline", "1-worker"])
def test_batched_work_of_clients_that_left_while_queued_is_withdrawn_and_never_batched(
    workers: int | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One batch slot, held by the first request's batch: the other 19 wait in the batch queue.
    Their clients leave: they are withdrawn (they never ran) and never join a later batch; the
    first one's batch runs on, so its request counts as cancelled, not withdrawn."""
    monkeypatch.setenv("NBSERVE_TEST_EVENTS", str(tmp_path))
    started.clear()
    release.clear()
    service, running = (Busy, started.is_set) if workers is None else (Blocking, None)
    with running_service(service) as handle:
        url = handle.url
        clients = send_and_hold(handle.port, "/block_rows", 20, {"x": [1]})
        wait_until(lambda: in_progress(url, "/block_rows") == 20, "20 requests in flight")
        wait_until(running or (lambda: list(tmp_path.glob("block-started-*"))), "a batch to run")
        assert batches(url, "block_rows") == (1, 1)  # the first request alone; 19 rows queued
        for client in clients:
            client.close()
        wait_until(lambda: abandoned(url, "/block_rows", "withdrawn") == 19, "19 withdrawn")
        wait_until(lambda: in_progress(url, "/block_rows") == 0, "every request to end")
        assert abandoned(url, "/block_rows", "cancelled") == 1
        release.set()
        (tmp_path / "release").touch()
        r = httpx.post(url + "/block_rows", json={"x": [7]}, timeout=30)
        assert (r.status_code, r.json()) == (200, [7])
        assert batches(url, "block_rows") == (2, 2)  # its rows alone: none of the 19 was merged
