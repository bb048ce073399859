"""How many CPUs this process may really use: the container's CPU limit, not the host's cores.

`os.cpu_count()` inside a container reports the host's cores (64 on a node where the pod may use
2), so sizing workers or math-library threads from it oversubscribes the CPU quota and every
request gets throttled. The limit comes from the cgroup: v2 `cpu.max` (`"200000 100000"` is two
CPUs, `"max 100000"` none), else v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us` (-1: none), and
the CPUs the process may be scheduled on (`sched_getaffinity`, e.g. `docker run --cpuset-cpus`)
cap it too. A fractional limit rounds up (1.5 CPUs → 2 workers: the quota is shared anyway).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["available_cpus", "cgroup_cpu_limit"]

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota of the cgroup mounted at `root`, in CPUs; None when there is none."""
    v2 = _read(root / "cpu.max")
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        if quota == "max" or not period:
            return None
        return _ratio(quota, period)
    for v1 in (root / "cpu", root / "cpu,cpuacct", root):
        quota_text = _read(v1 / "cpu.cfs_quota_us")
        if quota_text is not None:
            return _ratio(quota_text, _read(v1 / "cpu.cfs_period_us") or "100000")
    return None


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def available_cpus(root: Path = CGROUP_ROOT) -> int:
    """Whole CPUs this process may use: min(cgroup quota rounded up, CPUs it may run on), ≥ 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root)
    if limit is not None:
        cpus = min(cpus, math.ceil(limit))
    return max(1, cpus)
