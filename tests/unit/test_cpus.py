"""The CPU limit read from the cgroup (v2 and v1), capped by the CPUs the process may run on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nbserve._runtime.execution.cpus import available_cpus, cgroup_cpu_limit


def _cgroup(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text + "\n")
    return root


@pytest.mark.parametrize(
    ("files", "limit"),
    [
        ({"cpu.max": "200000 100000"}, 2.0),  # docker run --cpus 2, cgroup v2
        ({"cpu.max": "150000 100000"}, 1.5),
        ({"cpu.max": "max 100000"}, None),  # no limit
        ({"cpu/cpu.cfs_quota_us": "50000", "cpu/cpu.cfs_period_us": "100000"}, 0.5),  # v1
        (
            {"cpu,cpuacct/cpu.cfs_quota_us": "300000", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
            3.0,
        ),
        ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),
        ({}, None),  # no cgroup filesystem (macOS, a sandbox)
        ({"cpu.max": "garbage"}, None),
    ],
)
def test_the_cgroup_quota_in_cpus(
    tmp_path: Path, files: dict[str, str], limit: float | None
) -> None:
    assert cgroup_cpu_limit(_cgroup(tmp_path, files)) == limit


def test_available_cpus_rounds_the_quota_up_and_never_exceeds_the_affinity(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    assert available_cpus(_cgroup(tmp_path / "half", {"cpu.max": "50000 100000"})) == 1
    assert available_cpus(_cgroup(tmp_path / "none", {"cpu.max": "max 100000"})) == affinity
    huge = _cgroup(tmp_path / "huge", {"cpu.max": f"{(affinity + 8) * 100000} 100000"})
    assert available_cpus(huge) == affinity


def test_nbserve_serve_sizes_math_threads_to_the_limit_unless_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from nbserve._cli.serve import THREAD_VARIABLES, _size_math_threads

    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    _size_math_threads()
    assert {os.environ[name] for name in THREAD_VARIABLES} == {str(available_cpus())}
    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name)
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    _size_math_threads()  # the user chose: nothing else is touched
    assert os.environ["OMP_NUM_THREADS"] == "7"
    assert "MKL_NUM_THREADS" not in os.environ
