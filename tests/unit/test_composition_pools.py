"""The pure parts of `_runtime/execution/composition.py`: which dependencies run apart, how GPUs are split
between depended pools and the main service, and how `/metrics` expositions merge."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import nbserve
from nbserve._runtime.execution.composition import (
    check_mode,
    devices_needed,
    merge_metrics,
    runs_apart,
    share_devices,
)
from nbserve._runtime.execution.placement import Device


def _devices(n: int) -> list[Device]:
    return [Device(index=i, name="H100") for i in range(n)]


def test_devices_needed_matches_placement() -> None:
    assert devices_needed(0, 4) == 0
    assert devices_needed(1, 2) == 2
    assert devices_needed(2, 2) == 4
    assert devices_needed(0.5, 3) == 2  # two workers per device
    assert devices_needed(0.25, 4) == 1


def test_pools_get_disjoint_gpus_from_the_end_and_the_main_service_the_rest() -> None:
    slices, rest = share_devices([2, 0, 1], _devices(4))
    assert [[d.index for d in s] if s is not None else None for s in slices] == [[2, 3], None, [1]]
    assert rest is not None
    assert [d.index for d in rest] == [0]


def test_when_they_do_not_fit_every_pool_plans_over_every_device() -> None:
    assert share_devices([2, 2], _devices(3)) == ([None, None], None)
    assert share_devices([0], _devices(1)) == ([None], None)
    # The main service's own workers need GPUs too: with one device, everyone shares it.
    assert share_devices([1], _devices(1), main_need=1) == ([None], None)
    slices, rest = share_devices([1], _devices(2), main_need=1)
    assert slices[0] is not None
    assert rest is not None
    assert ([d.index for d in slices[0]], [d.index for d in rest]) == ([1], [0])


def test_runs_apart_follows_the_declaration_and_the_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    @nbserve.service(workers=2)
    class Pooled:
        pass

    @nbserve.service(resources={"cpu": "1"})
    class WithResources:
        pass

    @nbserve.service
    class Bare:
        pass

    monkeypatch.delenv("NBSERVE_DEPENDENCIES", raising=False)
    assert [runs_apart(s) for s in (Pooled, WithResources, Bare)] == [True, True, False]
    monkeypatch.setenv("NBSERVE_DEPENDENCIES", "inline")
    assert [runs_apart(s) for s in (Pooled, WithResources, Bare)] == [False, False, False]
    # The argument (serve(dependencies=...), %%serve --dependencies) wins over the environment.
    assert [runs_apart(s, "workers") for s in (Pooled, WithResources, Bare)] == [True, True, False]
    monkeypatch.setenv("NBSERVE_DEPENDENCIES", "workers")
    assert [runs_apart(s, "inline") for s in (Pooled, WithResources, Bare)] == [False] * 3


def test_an_unknown_mode_is_refused_naming_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(
        ValueError, match=r"dependencies='pools': use 'auto' .* 'workers' .* 'inline'"
    ):
        check_mode("pools")
    monkeypatch.setenv("NBSERVE_DEPENDENCIES", "Pools")

    @nbserve.service(workers=2)
    class Pooled:
        pass

    with pytest.raises(ValueError, match="dependencies='pools'"):
        runs_apart(Pooled)


def test_merged_metrics_have_one_family_per_name() -> None:
    bodies = []
    for service in ("front", "pool"):
        registry = CollectorRegistry()
        Counter("requests", "Requests", ["service_name"], registry=registry).labels(service).inc()
        bodies.append(generate_latest(registry))
    merged = merge_metrics(bodies).decode()
    assert merged.count("# TYPE requests_total counter") == 1
    families = {f.name: f for f in text_string_to_metric_families(merged)}
    services = {s.labels["service_name"] for s in families["requests"].samples}
    assert services == {"front", "pool"}
