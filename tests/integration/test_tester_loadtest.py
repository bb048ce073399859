"""`load_test()` against a real server: real HTTP from the generator's own process, one
DataFrame row per request, sane numbers, bodies as chosen; and the dashboard's view of a
batching service served by a worker process."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nbserve
from nbserve._notebook.tester.loadtest import COLUMNS, LoadTestReport, load_test
from nbserve._notebook.tester.plots import load_test_svg as plot_svg
from nbserve._notebook.tester.stats import snapshot
from nbserve._notebook.tester.target import as_target
from nbserve.testing import running_service


@nbserve.service
class Echo:
    @nbserve.api
    def classify(self, text: str) -> dict[str, str]:
        return {"label": "positive" if "love" in text else "neutral"}

    @nbserve.api
    def shout(self, text: str, /) -> str:
        return text.upper()

    @nbserve.api
    def upload(self, f: Path) -> int:
        return len(f.read_bytes())


@pytest.fixture(scope="module")
def handle() -> Iterator[Any]:
    with running_service(Echo, token="lt") as h:
        yield h


def test_one_row_per_request_and_sane_numbers(handle: Any) -> None:
    df = load_test(handle, "/classify", concurrency=2, duration=0.5, progress=False, show=False)
    summary = df.attrs["summary"]
    assert list(df.columns) == COLUMNS
    assert len(df) == summary["requests"] > 0
    assert (df["status"] == 200).all()  # the token went along: no 401
    assert (df["error"] == "").all()
    assert (df["latency_ms"] > 0).all()
    assert df["start_s"].is_monotonic_increasing
    assert (df["start_s"] >= 0).all()
    assert (df["bytes"] == len(b'{"label":"neutral"}')).all()  # the example body: "string"
    assert summary["ok"] == len(df)
    assert summary["errors"] == {}
    assert summary["requests_per_s"] > 0
    assert summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"] <= summary["max_ms"]
    # The server counted the same requests.
    assert handle.stats()["/classify"]["count"] >= len(df)


def test_a_request_cap_and_the_users_bodies(handle: Any) -> None:
    bodies = [{"text": "I love it"}, {"wrong": 1}]
    df = load_test(
        handle,
        "classify",
        concurrency=1,
        duration=30,
        requests=6,
        bodies=bodies,
        progress=False,
        show=False,
    )
    assert len(df) == 6
    # Sent in turn with one client: ok, 400, ok, 400, ...
    assert df["status"].tolist() == [200, 400] * 3
    assert df.attrs["summary"]["errors"] == {400: 3}


def test_a_root_text_body_is_sent_as_text(handle: Any) -> None:
    df = load_test(
        handle,
        "/shout",
        concurrency=1,
        duration=30,
        requests=2,
        body="hey",
        progress=False,
        show=False,
    )
    assert df["status"].tolist() == [200, 200]
    assert df["bytes"].tolist() == [3, 3]


def test_bad_choices_are_explained(handle: Any) -> None:
    with pytest.raises(
        ValueError, match=r"several APIs \(/classify, /shout, /upload\): pick one with route="
    ):
        load_test(handle, progress=False, show=False)
    with pytest.raises(
        ValueError, match="no API at '/nope'; its routes: /classify, /shout, /upload"
    ):
        load_test(handle, "/nope", progress=False, show=False)
    with pytest.raises(ValueError, match="needs a file in 'f'"):
        load_test(handle, "/upload", progress=False, show=False)
    with pytest.raises(ValueError, match="concurrency=0"):
        load_test(handle, "/shout", concurrency=0, progress=False, show=False)


def test_no_server_means_status_zero_rows() -> None:
    with running_service(Echo) as h:
        target = as_target(h)
    # Stopped: every request fails to connect, and says so.
    df = load_test(
        target, "/classify", concurrency=1, duration=30, requests=3, progress=False, show=False
    )
    assert df["status"].tolist() == [0, 0, 0]
    assert df["error"].str.startswith("ConnectError").all()
    assert df.attrs["summary"]["errors"] == {0: 3}


def test_the_report_and_plots(handle: Any) -> None:
    df = load_test(
        handle, "/classify", concurrency=2, duration=30, requests=20, progress=False, show=False
    )
    report = LoadTestReport(df.attrs["summary"])
    assert report.text() == "nbserve load test of /classify: 2 clients"
    assert "requests/s" in report.html()
    assert "p99" in report.html()
    svg = plot_svg(df)
    assert svg.startswith("<?xml")
    for title in ("latency over time", "latency histogram", "throughput"):
        assert title in svg
    # Deterministic ids (a fixed hash salt, no date): the same samples draw the same file.
    assert re.sub(r"\s+", "", svg) == re.sub(r"\s+", "", plot_svg(df))


@nbserve.service(workers=1)
class Batched:
    @nbserve.api(batchable=True, max_batch_size=8, max_latency_ms=5000)
    def double(self, x: np.ndarray) -> np.ndarray:
        return x * 2


@pytest.mark.slow
def test_the_dashboard_shows_batches_and_workers() -> None:
    with running_service(Batched) as h:
        df = load_test(
            h,
            "/double",
            concurrency=4,
            duration=30,
            requests=16,
            body={"x": [1.0]},
            progress=False,
            show=False,
        )
        assert (df["status"] == 200).all(), df["error"].tolist()
        frame = snapshot(as_target(h))
    assert frame["total"] >= 16
    assert [w["state"] for w in frame["workers"]] == ["ready"]
    assert frame["workers"][0]["pid"].isdigit()
    rows = frame["batches"]["double"]
    assert sum(count for _, count in rows) >= 1  # at least one batch was dispatched
    assert all(bound is None or bound >= 1 for bound, _ in rows)
    json.dumps(frame, allow_nan=False)  # it crosses the comm as strict JSON
