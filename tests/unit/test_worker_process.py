"""How many CPU threads each worker gets (`cpu_threads_per_worker`), and the env a worker starts with."""

from __future__ import annotations

import logging

import pytest

from nbserve._runtime.execution.placement import WorkerPlacement
from nbserve._runtime.execution.workers.process import (
    CPU_THREAD_VARS,
    WorkerProcess,
    available_cores,
    cpu_threads_per_worker,
)


@pytest.mark.parametrize(
    ("cpu", "workers", "cores", "expected"),
    [
        (None, 2, 8, 4),
        (None, 3, 8, 2),
        (None, 4, 2, 1),  # at least one
        ("2", 4, 2, 2),  # resources.cpu wins over the division
        (3, 1, 64, 3),
        (8, 1, 4, 4),  # never more than the cores
        (1.5, 1, 64, 1),
        ("500m", 1, 64, 1),
        ("2500m", 1, 64, 2),
        ("lots", 2, 8, 4),  # not a quantity: the division
    ],
)
def test_threads_per_worker(
    cpu: str | float | None, workers: int, cores: int, expected: int
) -> None:
    assert cpu_threads_per_worker(cpu, workers, cores) == expected


def test_available_cores_is_at_least_one() -> None:
    assert available_cores() >= 1


def test_the_child_env_sets_each_variable_to_the_share_or_to_the_users_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in CPU_THREAD_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "7")
    process = WorkerProcess(
        0,
        WorkerPlacement(worker=0, devices=(), env={}),
        on_message=lambda msg: None,
        on_eof=lambda: None,
        logger=logging.getLogger("test"),
        env={"OPENBLAS_NUM_THREADS": "5"},
        cpu_threads=2,
    )
    env = process.child_env()
    # MKL's (the user's) value for the unset one; the service's envs keep theirs
    assert [env[name] for name in CPU_THREAD_VARS] == ["7", "7", "5"]
    assert process.thread_env == {
        "OMP_NUM_THREADS": "7",
        "MKL_NUM_THREADS": "7",
        "OPENBLAS_NUM_THREADS": "5",
    }
    monkeypatch.delenv("MKL_NUM_THREADS")
    process._env = {}
    assert [process.child_env()[name] for name in CPU_THREAD_VARS] == ["2", "2", "2"]
