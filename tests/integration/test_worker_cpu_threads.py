"""Each worker process gets its share of CPU threads, read inside real workers (torch included)."""

from __future__ import annotations

import os
from typing import Any

import pytest

import nbserve
from nbserve._runtime.execution.workers.process import CPU_THREAD_VARS
from nbserve.testing import running_service

pytestmark = pytest.mark.slow


class ReportThreads:
    """Reports the thread settings its worker process runs with."""

    @nbserve.api
    def settings(self) -> dict[str, Any]:
        import torch  # imported after the worker started, as a model's __init__ would

        return {
            "env": {name: os.environ.get(name) for name in CPU_THREAD_VARS},
            "torch": torch.get_num_threads(),
            "pid": os.getpid(),
        }


Threads = nbserve.service(workers=2)(ReportThreads)
OneCore = nbserve.service(workers=1, resources={"cpu": "1"}, name="OneCore")(ReportThreads)
OneWorker = nbserve.service(workers=1, name="OneWorker")(ReportThreads)


def _workers_settings(service: Any) -> tuple[list[dict[str, Any]], list[Any]]:
    with running_service(service) as handle:
        seen: dict[int, dict[str, Any]] = {}
        with handle.client() as client:
            for _ in range(40):  # least-loaded routing: sequential calls may all go to one
                reply = client.settings()
                seen[reply["pid"]] = reply
        status = handle._server.deployment.executor.status()  # type: ignore[attr-defined]
    return list(seen.values()), status


@pytest.fixture(autouse=True)
def _no_thread_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CPU_THREAD_VARS:
        monkeypatch.delenv(name, raising=False)


CORES = len(os.sched_getaffinity(0))


def test_each_worker_gets_cores_divided_by_workers() -> None:
    share = max(1, CORES // 2)
    settings, status = _workers_settings(Threads)
    assert settings
    for reply in settings:
        assert reply["env"] == dict.fromkeys(CPU_THREAD_VARS, str(share))
        assert reply["torch"] == share  # torch's intra-op pool follows OMP_NUM_THREADS
    assert [s["cpu_threads"] for s in status] == [share, share]


def test_resources_cpu_sets_the_share() -> None:
    (reply,), status = _workers_settings(OneCore)
    assert reply["env"] == dict.fromkeys(CPU_THREAD_VARS, "1")
    assert reply["torch"] == 1
    assert [s["cpu_threads"] for s in status] == [1]


def test_a_setting_of_the_user_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    (reply,), status = _workers_settings(OneWorker)
    assert reply["env"] == dict.fromkeys(CPU_THREAD_VARS, "1")  # the user's value, not CORES
    assert reply["torch"] == 1
    assert [s["cpu_threads"] for s in status] == [1]
