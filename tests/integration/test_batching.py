"""Adaptive batching over HTTP: batches form under load, callers get their own rows, lone requests
are not held, oversized requests are split, every container type crosses, a slow model with a
small `max_latency_ms` serves every request, a bad request fails alone, a full queue sheds 503s
that show in /metrics and the log."""

from __future__ import annotations

import concurrent.futures
import re
import statistics
import threading
import time
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import torch

import nbserve
from nbserve.testing import running_service

pytestmark = pytest.mark.slow


@nbserve.service
class Batched:
    @nbserve.api(batchable=True, max_batch_size=32, max_latency_ms=5000)
    def double(self, x: np.ndarray) -> np.ndarray:
        time.sleep(0.004)
        return x * 2

    @nbserve.api
    def direct(self, x: np.ndarray) -> np.ndarray:
        time.sleep(0.004)
        return x * 2

    @nbserve.api(batchable=True, max_batch_size=4)
    def small(self, x: list[float]) -> list[float]:
        return [v + 1 for v in x]

    @nbserve.api(batchable=True, max_batch_size=16)
    def frame(self, df: pd.DataFrame) -> pd.DataFrame:
        return df.assign(total=df["a"] + df["b"])

    @nbserve.api(batchable=True, max_batch_size=16)
    def tensor(self, t: torch.Tensor) -> torch.Tensor:
        return t.sum(dim=1, keepdim=True)

    @nbserve.api(batchable=True, batch_dim=(1, 0), max_batch_size=16)
    def columns(self, x: np.ndarray) -> np.ndarray:
        return x.T * 10  # rows in: along axis 1; rows out: along axis 0


@nbserve.service
class Slow:
    """Issue 8's scenario: batches far slower than max_latency_ms; each row says its batch's size."""

    @nbserve.api(batchable=True, max_batch_size=32, max_latency_ms=5)
    def slow(self, x: np.ndarray) -> np.ndarray:
        time.sleep(0.05)
        return np.full((len(x), 1), len(x))

    @nbserve.api(batchable=True, max_batch_size=1)
    def one_at_a_time(self, x: list[int]) -> list[int]:
        time.sleep(0.2)
        return x

    @nbserve.api(batchable=True, max_batch_size=16)
    def project(self, x: np.ndarray) -> np.ndarray:
        """No Shape validator: a row of the wrong width reaches the model (and the merge)."""
        time.sleep(0.01)
        return x @ np.array([[1.0], [10.0]])


def batch_stats(client: httpx.Client, method: str) -> tuple[float, float]:
    text = client.get("/metrics").text
    found = {}
    for suffix in ("sum", "count"):
        m = re.search(
            rf'bentoml_service_adaptive_batch_size_{suffix}{{[^}}]*method_name="{method}"[^}}]*}} (\S+)',
            text,
        )
        found[suffix] = float(m.group(1)) if m else 0.0
    return found["sum"], found["count"]


def hammer(url: str, route: str, bodies: list[Any], threads: int = 16) -> list[httpx.Response]:
    """POST each body from `threads` concurrent clients; the replies in the bodies' order."""
    local: dict[int, httpx.Client] = {}

    def post(body: Any) -> httpx.Response:
        client = local.get(threading.get_ident())
        if client is None:
            client = local[threading.get_ident()] = httpx.Client(base_url=url, timeout=30)
        return client.post(route, json=body)

    try:
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            return list(pool.map(post, bodies))
    finally:
        for client in local.values():
            client.close()


@pytest.mark.parametrize("workers", [None, 2], ids=["inline", "2-workers"])
def test_batches_form_under_load_and_each_caller_gets_its_own_rows(workers: int | None) -> None:
    with (
        running_service(Batched, workers=workers) as handle,
        httpx.Client(base_url=handle.url) as client,
    ):
        bodies = [{"x": [[i, i + 0.5]] * (1 + i % 3)} for i in range(160)]
        replies = hammer(handle.url, "/double", bodies)
        for body, reply in zip(bodies, replies, strict=True):
            assert reply.status_code == 200, reply.text
            assert reply.json() == [[2 * v for v in row] for row in body["x"]]
        rows, batches = batch_stats(client, "double")
        assert rows == sum(len(b["x"]) for b in bodies)
        assert rows / batches > 2  # batches, not one call per request


@pytest.mark.parametrize("workers", [None, 2], ids=["inline", "2-workers"])
def test_a_lone_request_is_not_held(workers: int | None) -> None:
    with (
        running_service(Batched, workers=workers) as handle,
        httpx.Client(base_url=handle.url) as client,
    ):
        hammer(handle.url, "/double", [{"x": [[1.0]]}] * 100)  # teach the cost model under load
        time.sleep(0.3)
        extra = []
        for _ in range(15):
            began = time.perf_counter()
            client.post("/direct", json={"x": [[1.0]]}).raise_for_status()
            direct = time.perf_counter() - began
            began = time.perf_counter()
            client.post("/double", json={"x": [[1.0]]}).raise_for_status()
            extra.append(time.perf_counter() - began - direct)
            time.sleep(0.02)
        assert statistics.median(extra) < 0.005, extra  # generous: the batcher adds ~0.1 ms


def test_an_oversized_request_is_split_and_answered_whole() -> None:
    with running_service(Batched, workers=1) as handle, httpx.Client(base_url=handle.url) as client:
        r = client.post("/small", json={"x": list(range(10))})
        assert r.json() == [float(v + 1) for v in range(10)]
        assert batch_stats(client, "small") == (10.0, 3.0)  # 4 + 4 + 2 rows


def test_every_container_type_is_merged_and_split_through_a_worker() -> None:
    with running_service(Batched, workers=1) as handle:
        frames = [{"df": [{"a": i, "b": 10 * i}] * (1 + i % 2)} for i in range(12)]
        for body, reply in zip(
            frames, hammer(handle.url, "/frame", frames, threads=6), strict=True
        ):
            assert reply.json() == [
                {"a": r["a"], "b": r["b"], "total": r["a"] + r["b"]} for r in body["df"]
            ]
        tensors = [{"t": [[i, 1.0, 2.0]] * (1 + i % 3)} for i in range(12)]
        for body, reply in zip(
            tensors, hammer(handle.url, "/tensor", tensors, threads=6), strict=True
        ):
            assert reply.json() == [[sum(row)] for row in body["t"]]
        columns = [{"x": [[i] * (1 + i % 2), [-i] * (1 + i % 2)]} for i in range(12)]
        for body, reply in zip(
            columns, hammer(handle.url, "/columns", columns, threads=6), strict=True
        ):
            assert reply.json() == (np.asarray(body["x"]).T * 10).tolist()
        with httpx.Client(base_url=handle.url) as client:
            assert batch_stats(client, "frame")[0] == sum(len(b["df"]) for b in frames)


@pytest.mark.parametrize("workers", [None, 2], ids=["inline", "2-workers"])
def test_a_slow_model_with_a_small_max_latency_serves_every_request_in_batches(
    workers: int | None,
) -> None:
    with running_service(Slow, workers=workers) as handle:
        replies = hammer(handle.url, "/slow", [{"x": [[i, 1.0]]} for i in range(24)], threads=8)
    assert [r.status_code for r in replies] == [200] * 24
    batch_sizes = [r.json()[0][0] for r in replies]
    assert max(batch_sizes) > 1  # batched, not one call per request


@pytest.mark.parametrize("workers", [None, 1], ids=["inline", "1-worker"])
def test_a_request_with_rows_of_the_wrong_width_fails_alone(workers: int | None) -> None:
    with running_service(Slow, workers=workers) as handle:
        bodies = [{"x": [[i, 1.0, 5.0]] if i % 4 == 3 else [[i, 1.0]]} for i in range(24)]
        replies = hammer(handle.url, "/project", bodies, threads=8)
        with httpx.Client(base_url=handle.url) as client:
            _, batches = batch_stats(client, "project")
    for i, reply in enumerate(replies):
        if i % 4 == 3:
            assert reply.status_code == 500, reply.text
        else:
            assert reply.status_code == 200, reply.text
            assert reply.json() == [[i + 10.0]]
    assert batches < 24  # the good ones were still batched


@pytest.mark.parametrize("workers", [None, 1], ids=["inline", "1-worker"])
def test_a_0d_value_for_a_batchable_array_is_a_400_naming_the_field_and_batch_dim(
    workers: int | None,
) -> None:
    with (
        running_service(Slow, workers=workers) as handle,
        httpx.Client(base_url=handle.url) as client,
    ):
        reply = client.post("/project", json={"x": 3})
    assert reply.status_code == 400
    body = reply.json()
    assert "'x'" in body["error"]
    assert "batch_dim=0" in body["error"]
    assert '{"x": [[1.0, 2.0]]}' in body["error"]  # the fix, as an example
    assert body["detail"][0]["loc"] == ["x"]
    assert body["detail"][0]["type"] == "batch_dim"


def test_a_full_queue_sheds_503s_that_name_the_cause_and_show_in_metrics_and_logs() -> None:
    # max_batch_size=1 with one slot: the queue holds 16 rows; 24 clients at once overflow it.
    with running_service(Slow) as handle:
        replies = hammer(handle.url, "/one_at_a_time", [{"x": [i]} for i in range(24)], threads=24)
        with httpx.Client(base_url=handle.url) as client:
            metrics = client.get("/metrics").text
        logs = handle.logs(100)
    codes = [r.status_code for r in replies]
    assert set(codes) <= {200, 503}
    shed = codes.count(503)
    assert shed > 0
    for i, r in enumerate(replies):
        if r.status_code == 200:
            assert r.json() == [i]
        else:
            assert "the batch queue is full" in r.json()["error"]
            assert r.json()["detail"] == {"reason": "queue_full"}
    counted = re.search(
        r'nbserve_batch_shed_total{[^}]*method_name="one_at_a_time"[^}]*reason="queue_full"[^}]*} (\S+)',
        metrics,
    )
    assert counted is not None
    assert float(counted.group(1)) == shed
    assert any("503 for a request to one_at_a_time" in line for line in logs), logs
