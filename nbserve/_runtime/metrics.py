"""Prometheus metrics for one served service, under BentoML's metric names and labels.

Dashboards and alerts written for BentoML 1.4 keep working: the names, label sets and duration
buckets are those of BentoML's `RunnerTrafficMetricsMiddleware` (namespace `bentoml_service`)
and of its adaptive-batching histogram (`_bentoml_impl/server/app.py`). nbserve adds metrics of
its own: `nbserve_batch_queue_wait_seconds`, `nbserve_batch_shed_total` (requests the batch
queue turned away with 503, by reason), and `nbserve_abandoned_work_total` (what became of the
work of clients that disconnected before their answer).

Design notes:
- Each `ServiceMetrics` owns a `CollectorRegistry`, so several services served from one notebook
  kernel never clash on metric names (prometheus_client's global registry would raise
  "Duplicated timeseries").
- `request_started` / `request_finished` run on the event loop for every request. BentoML calls
  `.labels(...)` with five keyword arguments per metric per request (a dict build, a tuple of
  `str()` calls and a lock each time); here each label child is bound once per (endpoint,
  status) and cached in a plain dict, so a request costs dict lookups and the children's own
  lock-protected increments.
- The label values are fixed per instance except `endpoint` and `http_response_code`, so the
  only cardinality comes from the endpoints the server passes: it should pass its own routes,
  never an arbitrary request path (a 404 scan would otherwise mint a series per path).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

__all__ = ["DEFAULT_BUCKET", "QUEUE_WAIT_BUCKETS", "ServiceMetrics", "exponential_buckets"]

INF = float("inf")

# BentoML's `bentoml._internal.utils.metrics.DEFAULT_BUCKET`: request durations in seconds.
DEFAULT_BUCKET: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 180.0, INF,
)  # fmt: skip

# Queue waits are bounded by `max_latency_ms` (tens of milliseconds, typically), so the buckets
# are finer than the request buckets at the low end.
QUEUE_WAIT_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, INF,
)  # fmt: skip

# BentoML sizes the batch histogram by the largest max_batch_size of the batchable APIs, or 100.
_DEFAULT_MAX_BATCH_SIZE = 100
_NAMESPACE = "bentoml_service"
# BentoML pre-initialises these codes so `rate()` has a zero sample before the first request.
_PREINIT_CODES = (200, 500)
_ABANDONED_OUTCOMES = ("withdrawn", "cancelled", "finished")  # executor.Outcome


def exponential_buckets(start: float, factor: float, end: float) -> tuple[float, ...]:
    """BentoML's `exponential_buckets`: start, start·factor, ... below end, then end and +Inf.

    Unlike BentoML's (which asserts `start < end`), `end <= start` gives `(end, +Inf)`, so a
    service whose only batchable API has `max_batch_size=1` still gets a valid histogram.
    """
    if start <= 0 or factor <= 1:
        msg = f"exponential_buckets(start={start!r}, factor={factor!r}, ...): start must be > 0 and factor > 1, e.g. (1, 2, 100)"
        raise ValueError(msg)
    buckets: list[float] = []
    bound = start
    while bound < end and len(buckets) < 100:  # BentoML's MAX_BUCKET_COUNT
        buckets.append(bound)
        bound *= factor
    return (*buckets, float(end), INF)


class ServiceMetrics:
    """The metrics of one served service; `render()` is the body of `GET {prefix}/metrics`.

    `service_name` is BentoML's `service_name` label (the bento name, e.g. `iris_classifier`);
    `runner_name` (default: `service_name`) is its `runner_name` label, the service class name.
    `api_names` are the `endpoint` label values to pre-initialise at zero for codes 200 and 500:
    BentoML's `endpoint` is the request path, so the server passes each API's full route
    (prefix + route, e.g. `/v1/predict`) and the same string to `request_started/_finished`.
    `max_batch_size` maps API names to their `max_batch_size` (batchable APIs only); the largest
    sizes the `adaptive_batch_size` buckets.
    """

    def __init__(
        self,
        service_name: str,
        service_version: str = "not available",
        api_names: Iterable[str] = (),
        max_batch_size: dict[str, int] | None = None,
        *,
        runner_name: str | None = None,
        duration_buckets: Iterable[float] = DEFAULT_BUCKET,
    ) -> None:
        self.service_name = service_name
        self.service_version = service_version
        self.runner_name = runner_name if runner_name is not None else service_name
        self.registry = CollectorRegistry(auto_describe=True)
        request_labels = (
            "endpoint",
            "service_name",
            "service_version",
            "http_response_code",
            "runner_name",
        )
        self._request_total = Counter(
            "request_total",
            "Total number of HTTP requests",
            request_labels,
            namespace=_NAMESPACE,
            registry=self.registry,
        )
        self._request_duration = Histogram(
            "request_duration_seconds",
            "API HTTP request duration in seconds",
            request_labels,
            namespace=_NAMESPACE,
            registry=self.registry,
            buckets=tuple(duration_buckets),
        )
        self._in_progress = Gauge(
            "request_in_progress",
            "Total number of HTTP requests in progress now",
            ("endpoint", "service_name", "service_version", "runner_name"),
            namespace=_NAMESPACE,
            registry=self.registry,
        )
        last_request = Gauge(
            "last_request_timestamp_seconds",
            "Timestamp of the last received request",
            ("service_name", "service_version", "runner_name"),
            namespace=_NAMESPACE,
            registry=self.registry,
        )
        self._last_request = last_request.labels(service_name, service_version, self.runner_name)
        largest = max((max_batch_size or {}).values(), default=_DEFAULT_MAX_BATCH_SIZE)
        self._batch_size = Histogram(
            "adaptive_batch_size",
            "Service adaptive batch size",
            ("runner_name", "worker_index", "method_name", "service_version", "service_name"),
            namespace=_NAMESPACE,
            registry=self.registry,
            buckets=exponential_buckets(1, 2, largest),
        )
        self._queue_wait = Histogram(
            "nbserve_batch_queue_wait_seconds",
            "How long the oldest request of a batch waited in the batch queue before dispatch",
            ("service_name", "service_version", "method_name"),
            registry=self.registry,
            buckets=QUEUE_WAIT_BUCKETS,
        )
        self._shed = Counter(
            "nbserve_batch_shed_total",
            "Requests to a batchable API turned away with 503 (reason: queue_full, stopping)",
            ("service_name", "service_version", "method_name", "reason"),
            registry=self.registry,
        )
        for api in max_batch_size or {}:  # a zero sample, so rate() works before the first shed
            self._shed.labels(service_name, service_version, api, "queue_full")
        self._abandoned = Counter(
            "nbserve_abandoned_work",
            "Work of API requests whose client disconnected before the answer, by outcome: "
            "withdrawn (queued, never ran), cancelled (stopped while it ran: async work, a "
            "stream, a batched request whose batch was running), finished (sync work ran to its "
            "end; result dropped)",
            ("service_name", "endpoint", "outcome"),
            registry=self.registry,
        )
        # Bound label children, keyed by what varies per call (see the module docstring).
        self._started: dict[str, Gauge] = {}
        self._finished: dict[tuple[str, int], tuple[Counter, Histogram, Gauge]] = {}
        self._batches: dict[tuple[str, int], tuple[Histogram, Histogram]] = {}
        for endpoint in api_names:
            for code in _PREINIT_CODES:  # the counter only, as BentoML: no empty histograms
                self._request_total.labels(
                    endpoint, service_name, service_version, str(code), self.runner_name
                )
            for outcome in _ABANDONED_OUTCOMES:  # a zero sample for `rate()` from the start
                self._abandoned.labels(service_name, endpoint, outcome)

    # --- request path (event loop, every request) ------------------------------------------
    def request_started(self, endpoint: str) -> None:
        """A request for `endpoint` arrived: in-progress +1, last-request timestamp now."""
        gauge = self._started.get(endpoint)
        if gauge is None:
            gauge = self._bind_started(endpoint)
        gauge.inc()
        self._last_request.set(time.time())

    def request_finished(self, endpoint: str, status: int, duration_s: float) -> None:
        """The response for `endpoint` is complete: count it, time it, in-progress −1."""
        children = self._finished.get((endpoint, status))
        if children is None:
            children = self._bind_finished(endpoint, status)
        total, duration, in_progress = children
        total.inc()
        duration.observe(duration_s if duration_s > 0 else 0.0)  # clocks can step back
        in_progress.dec()

    def _bind_started(self, endpoint: str) -> Gauge:
        gauge = self._in_progress.labels(
            endpoint, self.service_name, self.service_version, self.runner_name
        )
        self._started[endpoint] = gauge
        return gauge

    def _bind_finished(self, endpoint: str, status: int) -> tuple[Counter, Histogram, Gauge]:
        labels = (endpoint, self.service_name, self.service_version, str(status), self.runner_name)
        gauge = self._started.get(endpoint)
        if gauge is None:
            gauge = self._bind_started(endpoint)
        children = (
            self._request_total.labels(*labels),
            self._request_duration.labels(*labels),
            gauge,
        )
        self._finished[(endpoint, status)] = children
        return children

    def work_abandoned(self, endpoint: str, outcome: str) -> None:
        """The client of a request to `endpoint` left; its work ended as `outcome`
        (`executor.Outcome`: "withdrawn", "cancelled" or "finished")."""
        self._abandoned.labels(self.service_name, endpoint, outcome).inc()

    # --- batching ---------------------------------------------------------------------------
    def observe_batch(
        self, api: str, size: int, queue_wait_s: float, worker_index: int = 0
    ) -> None:
        """One batch of `size` rows of API `api` was dispatched after `queue_wait_s` seconds.

        `worker_index` is BentoML's label of the same name (0: the server process's batcher).
        """
        children = self._batches.get((api, worker_index))
        if children is None:
            children = (
                self._batch_size.labels(
                    self.runner_name,
                    str(worker_index),
                    api,
                    self.service_version,
                    self.service_name,
                ),
                self._queue_wait.labels(self.service_name, self.service_version, api),
            )
            self._batches[(api, worker_index)] = children
        batch_size, queue_wait = children
        batch_size.observe(size)
        queue_wait.observe(queue_wait_s if queue_wait_s > 0 else 0.0)

    def observe_shed(self, api: str, reason: str) -> None:
        """A request to batchable API `api` got 503 without being run (`reason`: why)."""
        self._shed.labels(self.service_name, self.service_version, api, reason).inc()

    # --- scrape -----------------------------------------------------------------------------
    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type, for `GET /metrics`.

        About 1 ms for one endpoint and ~25 ms for twenty endpoints × three status codes (each
        histogram series is 19 lines). Safe to call from a worker thread to keep a scrape off
        the event loop: prometheus_client guards every value with its own lock.
        """
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def __repr__(self) -> str:
        return f"<ServiceMetrics {self.service_name} ({len(self._started)} endpoints)>"
