"""`ServiceMetrics`: BentoML's metric names, labels and buckets, one registry per service."""

from __future__ import annotations

import math
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nbserve._runtime.metrics import DEFAULT_BUCKET, ServiceMetrics, exponential_buckets

REQUEST_LABELS = {
    "endpoint",
    "service_name",
    "service_version",
    "http_response_code",
    "runner_name",
}


def samples(metrics: ServiceMetrics) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Parsed exposition: sample name → [(labels, value)]."""
    body, _ = metrics.render()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def value(metrics: ServiceMetrics, name: str, **labels: str) -> float:
    matches = [v for lab, v in samples(metrics).get(name, []) if labels.items() <= lab.items()]
    assert len(matches) == 1, f"{name} {labels}: {matches}"
    return matches[0]


def test_render_content_type_is_prometheus_text() -> None:
    body, content_type = ServiceMetrics("svc").render()
    assert content_type.startswith("text/plain; version=")
    assert "charset=utf-8" in content_type
    assert isinstance(body, bytes)


def test_request_total_is_preinitialised_for_200_and_500() -> None:
    m = ServiceMetrics("iris", api_names=["/predict", "/explain"])
    totals = samples(m)["bentoml_service_request_total"]
    assert {(lab["endpoint"], lab["http_response_code"]) for lab, _ in totals} == {
        ("/predict", "200"),
        ("/predict", "500"),
        ("/explain", "200"),
        ("/explain", "500"),
    }
    assert all(v == 0 for _, v in totals)
    # Like BentoML, only the counter: no empty histogram series before the first request.
    assert "bentoml_service_request_duration_seconds_count" not in samples(m)


def test_a_request_is_counted_timed_and_tracked_in_progress() -> None:
    m = ServiceMetrics("iris", "1.0", ["/predict"], runner_name="Iris")
    before = time.time()
    m.request_started("/predict")
    assert value(m, "bentoml_service_request_in_progress", endpoint="/predict") == 1
    m.request_finished("/predict", 200, 0.02)
    m.request_started("/predict")
    m.request_finished("/predict", 400, 0.001)

    labels = {
        "endpoint": "/predict",
        "service_name": "iris",
        "service_version": "1.0",
        "runner_name": "Iris",
    }
    assert value(m, "bentoml_service_request_total", http_response_code="200", **labels) == 1
    assert value(m, "bentoml_service_request_total", http_response_code="400", **labels) == 1
    assert value(m, "bentoml_service_request_total", http_response_code="500", **labels) == 0
    assert value(m, "bentoml_service_request_in_progress", **labels) == 0
    assert value(
        m, "bentoml_service_request_duration_seconds_sum", http_response_code="200"
    ) == pytest.approx(0.02)
    assert (
        value(
            m,
            "bentoml_service_request_duration_seconds_bucket",
            http_response_code="200",
            le="0.025",
        )
        == 1
    )
    assert (
        value(
            m,
            "bentoml_service_request_duration_seconds_bucket",
            http_response_code="200",
            le="0.01",
        )
        == 0
    )
    stamp = value(
        m, "bentoml_service_last_request_timestamp_seconds", service_name="iris", runner_name="Iris"
    )
    assert before <= stamp <= time.time()


def test_label_sets_match_bentoml() -> None:
    m = ServiceMetrics("iris", api_names=["/p"], max_batch_size={"p": 8})
    m.request_started("/p")
    m.request_finished("/p", 200, 0.1)
    m.observe_batch("p", 3, 0.002)
    s = samples(m)
    assert set(s["bentoml_service_request_total"][0][0]) == REQUEST_LABELS
    assert set(s["bentoml_service_request_duration_seconds_count"][0][0]) == REQUEST_LABELS
    assert set(s["bentoml_service_request_in_progress"][0][0]) == REQUEST_LABELS - {
        "http_response_code"
    }
    assert set(s["bentoml_service_last_request_timestamp_seconds"][0][0]) == {
        "service_name",
        "service_version",
        "runner_name",
    }
    assert set(s["bentoml_service_adaptive_batch_size_count"][0][0]) == {
        "runner_name",
        "worker_index",
        "method_name",
        "service_version",
        "service_name",
    }
    assert set(s["nbserve_batch_queue_wait_seconds_count"][0][0]) == {
        "service_name",
        "service_version",
        "method_name",
    }
    # An unversioned service is "not available", and runner_name defaults to the service name.
    lab = s["bentoml_service_request_total"][0][0]
    assert (lab["service_version"], lab["runner_name"]) == ("not available", "iris")


def test_duration_buckets_are_bentomls_default() -> None:
    m = ServiceMetrics("svc")
    m.request_started("/a")
    m.request_finished("/a", 200, 0.3)
    bounds = [
        float(lab["le"]) for lab, _ in samples(m)["bentoml_service_request_duration_seconds_bucket"]
    ]
    assert bounds == list(DEFAULT_BUCKET)
    assert bounds[:4] == [0.005, 0.01, 0.025, 0.05]
    assert bounds[-2:] == [180.0, math.inf]


def test_batch_size_buckets_follow_the_largest_max_batch_size() -> None:
    m = ServiceMetrics("svc", max_batch_size={"a": 10, "b": 32})
    m.observe_batch("b", 5, 0.004, worker_index=2)
    buckets = [
        (lab["le"], v) for lab, v in samples(m)["bentoml_service_adaptive_batch_size_bucket"]
    ]
    assert [le for le, _ in buckets] == ["1.0", "2.0", "4.0", "8.0", "16.0", "32.0", "+Inf"]
    assert dict(buckets)["4.0"] == 0
    assert dict(buckets)["8.0"] == 1
    assert (
        value(m, "bentoml_service_adaptive_batch_size_sum", method_name="b", worker_index="2") == 5
    )
    assert value(m, "nbserve_batch_queue_wait_seconds_sum", method_name="b") == pytest.approx(0.004)


def test_exponential_buckets_match_bentoml_and_accept_one() -> None:
    assert exponential_buckets(1, 2, 100) == (1, 2, 4, 8, 16, 32, 64, 100.0, math.inf)
    assert exponential_buckets(1, 2, 1) == (1.0, math.inf)  # max_batch_size=1 (BentoML asserts)
    # The default when no API is batchable: BentoML's 100.
    assert ServiceMetrics("svc")._batch_size._upper_bounds[-2] == 100  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="factor > 1"):
        exponential_buckets(1, 1, 10)


def test_each_instance_has_its_own_registry() -> None:
    a = ServiceMetrics("same")
    b = ServiceMetrics("same")  # the global registry would raise "Duplicated timeseries"
    a.request_started("/x")
    a.request_finished("/x", 200, 0.1)
    assert value(a, "bentoml_service_request_total", endpoint="/x") == 1
    assert "bentoml_service_request_total" not in samples(b)


def test_negative_durations_count_as_zero() -> None:
    m = ServiceMetrics("svc")
    m.request_started("/x")
    m.request_finished("/x", 200, -0.5)  # a clock stepping back must not corrupt the sum
    m.observe_batch("x", 1, -1.0)
    assert value(m, "bentoml_service_request_duration_seconds_sum") == 0
    assert value(m, "nbserve_batch_queue_wait_seconds_sum") == 0


def test_the_request_path_reuses_bound_label_children(monkeypatch: pytest.MonkeyPatch) -> None:
    """Per request: dict lookups only, never BentoML's `.labels(**kw)` (its cost: reference §11).

    The cost itself is a benchmark's business (≈2.6 µs a request here); this pins the reason."""
    m = ServiceMetrics("svc", api_names=["/predict"])
    m.request_started("/predict")  # first sight of a route and status binds the children
    m.request_finished("/predict", 200, 0.001)

    def no_labels(*args: object, **kwargs: object) -> None:
        raise AssertionError("label lookup on the request path")

    for metric in (m._request_total, m._request_duration, m._in_progress):
        monkeypatch.setattr(metric, "labels", no_labels)
    for _ in range(3):
        m.request_started("/predict")
        m.request_finished("/predict", 200, 0.001)
    body, _ = m.render()
    totals = [
        sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.name == "bentoml_service_request_total"
        and sample.labels["http_response_code"] == "200"
    ]
    assert totals == [4.0]  # the bound children did the counting


def test_abandoned_work_is_counted_by_outcome_from_zero() -> None:
    m = ServiceMetrics("svc", api_names=["/predict"])
    name = "nbserve_abandoned_work_total"
    outcomes = {lab["outcome"]: v for lab, v in samples(m)[name]}
    assert outcomes == {"withdrawn": 0, "cancelled": 0, "finished": 0}
    m.work_abandoned("/predict", "withdrawn")
    m.work_abandoned("/predict", "withdrawn")
    m.work_abandoned("/predict", "finished")
    assert value(m, name, endpoint="/predict", outcome="withdrawn", service_name="svc") == 2
    assert value(m, name, endpoint="/predict", outcome="finished") == 1
    assert value(m, name, endpoint="/predict", outcome="cancelled") == 0
