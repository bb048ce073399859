"""The numbers the live dashboard shows, and the poller that sends them only while it is seen.

One snapshot = the handle's per-route counts and exact p50/p95/p99 (`stats()`), plus what only
`/metrics` knows, read over HTTP like any scraper (token included): the adaptive batch size
histogram per API and each worker's state and devices (`nbserve_worker_info`).

Cheap when nobody looks: the page renews a lease (`watch`) every few seconds while the
dashboard is on screen; the poller thread runs only while a lease is fresh, and ends by itself
when the page goes away without saying so (a closed tab sends nothing).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from nbserve._notebook.tester.target import Target

__all__ = ["Poller", "parse_metrics", "snapshot"]

LEASE_S = 12.0
INTERVAL_S = 1.0


def parse_metrics(text: str) -> dict[str, Any]:
    """Batch size distributions (API → [[upper bound, count in bucket], ...]) and workers."""
    from prometheus_client.parser import text_string_to_metric_families

    cumulative: dict[str, dict[float, float]] = {}
    workers: list[dict[str, Any]] = []
    for family in text_string_to_metric_families(text):
        if family.name == "bentoml_service_adaptive_batch_size":
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    api = sample.labels.get("method_name", "")
                    bound = float(sample.labels["le"])
                    per_api = cumulative.setdefault(api, {})
                    per_api[bound] = per_api.get(bound, 0.0) + sample.value
        elif family.name == "nbserve_worker_info":
            for sample in family.samples:
                labels = sample.labels
                workers.append(
                    {
                        "index": int(labels.get("worker_index", "0") or 0),
                        "state": labels.get("state", ""),
                        "pid": labels.get("pid", ""),
                        "devices": labels.get("devices", ""),
                    }
                )
    # Upper bound → rows in that bucket; the +Inf bucket's bound is None (JSON has no Infinity,
    # and Jupyter's message packer refuses NaN and Infinity).
    batches: dict[str, list[list[float | None]]] = {}
    for api, buckets in cumulative.items():
        previous = 0.0
        rows: list[list[float | None]] = []
        for bound in sorted(buckets):
            count = buckets[bound] - previous
            previous = buckets[bound]
            rows.append([bound if bound != float("inf") else None, count])
        if previous:  # no batch yet: nothing to show
            batches[api] = rows
    workers.sort(key=lambda w: w["index"])
    return {"batches": batches, "workers": workers}


def snapshot(target: Target, client: httpx.Client | None = None) -> dict[str, Any]:
    """One dashboard frame: routes (count, errors, error rate, percentiles), batches, workers."""
    routes = []
    for route, numbers in target.stats().items():
        count = int(numbers.get("count", 0) or 0)
        errors = int(numbers.get("errors", 0) or 0)
        routes.append(
            {
                "route": route,
                "count": count,
                "errors": errors,
                "error_rate": errors / count if count else 0.0,
                "p50_ms": numbers.get("p50_ms") if count else None,
                "p95_ms": numbers.get("p95_ms") if count else None,
                "p99_ms": numbers.get("p99_ms") if count else None,
            }
        )
    frame: dict[str, Any] = {
        "state": target.state(),
        "routes": routes,
        "batches": {},
        "workers": [],
    }
    headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
    try:
        own = client is None
        http = client or httpx.Client(timeout=5, trust_env=False)
        try:
            response = http.get(target.url + "/metrics", headers=headers)
        finally:
            if own:
                http.close()
        if response.status_code == 200:
            frame.update(parse_metrics(response.text))
    except (httpx.HTTPError, ValueError):  # stopped or restarting: the routes still show
        pass
    frame["total"] = sum(r["count"] for r in routes)
    frame["total_errors"] = sum(r["errors"] for r in routes)
    return frame


class Poller:
    """Sends `snapshot(target)` through `emit` every second while a watch lease is fresh."""

    def __init__(self, target: Target, emit: Callable[[dict[str, Any]], None]) -> None:
        self._target = target
        self._emit = emit
        self._lease_until = 0.0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def watch(self, on: bool) -> None:
        """Renew (or drop) the lease; starts the thread when needed. Returns at once."""
        with self._lock:
            self._lease_until = time.monotonic() + LEASE_S if on else 0.0
            if on and not self.running:
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._run, name="nbserve-dashboard", daemon=True
                )
                self._thread.start()

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)

    def _run(self) -> None:
        with httpx.Client(timeout=5, trust_env=False) as client:
            while not self._stop.is_set():
                with self._lock:
                    if time.monotonic() > self._lease_until:
                        self._thread = None
                        return
                with contextlib.suppress(Exception):  # never print from a thread
                    self._emit({"type": "stats", "stats": snapshot(self._target, client)})
                self._stop.wait(INTERVAL_S)
