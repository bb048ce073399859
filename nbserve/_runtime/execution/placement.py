"""GPU placement: which devices each worker process sees.

`resources={"gpu": g}` is per worker. A whole number gives each worker its own disjoint set of
`g` devices; a fraction packs `floor(1 / g)` workers onto each device. The plan is expressed as
`CUDA_VISIBLE_DEVICES` in each worker's environment, set before the worker's interpreter starts,
so nothing has to be imported in the right order inside the worker.

Why not BentoML's allocator: it gives every worker of a service the same device (`{gpu: 1,
workers: 2}` puts both on GPU 0), keeps assigning phantom indices when asked for more than
exists, and skips allocation entirely for `workers="cpu_count"` (reference/bentoml.md §5.2).
Here an impossible request is an error that names the numbers.

Detection must not initialise CUDA in the server process (a CUDA context in a notebook kernel
costs hundreds of MiB per device and breaks a later fork), so it asks NVML (`pynvml`, from the
`nvidia-ml-py` distribution, imported lazily) and falls back to `nvidia-smi`; it never imports
torch. A `CUDA_VISIBLE_DEVICES` already set in the server process bounds the pool: workers are
only ever given devices the server itself was allowed to see.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import subprocess
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nbserve.exceptions import WorkerError

__all__ = ["Device", "WorkerPlacement", "detect_gpus", "match_gpu_type", "plan_placement"]

# NVML and nvidia-smi number devices in PCI bus order; CUDA's default order is "fastest
# first". On a machine with mixed GPUs the two disagree, so workers get CUDA_DEVICE_ORDER=
# PCI_BUS_ID (see `_placed`) and an index means the same device to NVML and to the worker.
# Tolerance for fractions such as 0.33 (three workers per device, not two).
_EPS = 1e-6


@dataclass(frozen=True)
class Device:
    """One GPU the server may hand to workers."""

    index: int
    """NVML / nvidia-smi index (PCI bus order); -1 when only `CUDA_VISIBLE_DEVICES` names it."""
    name: str = "GPU"
    uuid: str = ""
    memory_mib: int = 0
    visible_id: str = ""
    """How a worker's `CUDA_VISIBLE_DEVICES` names it: the server's own token for it, else its index."""

    @property
    def cuda_id(self) -> str:
        return self.visible_id or str(self.index)

    def describe(self) -> str:
        return f"GPU {self.cuda_id} ({self.name})"


@dataclass(frozen=True)
class WorkerPlacement:
    """Where one worker runs: its devices, the share of each it may use, its extra environment."""

    worker: int
    devices: tuple[Device, ...] = ()
    share: float = 1.0
    """The fraction of each device this worker was planned for (1.0 for whole devices)."""
    env: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """E.g. `GPU 0 (NVIDIA H100 80GB HBM3)`, `GPU 1 (NVIDIA L4) × 0.5`, `CPU`."""
        if not self.devices:
            return "CPU"
        text = ", ".join(d.describe() for d in self.devices)
        return text + (f" × {self.share:g}" if self.share < 1.0 else "")


# --- detection ---------------------------------------------------------------------------------
def _detect_nvml() -> list[Device] | None:
    """Devices from NVML, or None when NVML is not installed or has no driver to talk to."""
    try:
        import pynvml  # type: ignore[import-not-found,import-untyped,unused-ignore]  # nvidia-ml-py, optional
    except ImportError:
        return None
    nvml: Any = pynvml  # the bindings are untyped
    try:
        nvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound / DriverNotLoaded: no usable GPU here
        return None
    try:
        devices = []
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            name, uuid = nvml.nvmlDeviceGetName(handle), nvml.nvmlDeviceGetUUID(handle)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle).total
            devices.append(
                Device(
                    index=i,
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    uuid=uuid.decode() if isinstance(uuid, bytes) else str(uuid),
                    memory_mib=int(memory) // 2**20,
                )
            )
        return devices
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):  # shutting down a half-initialised NVML is best effort
            nvml.nvmlShutdown()


def parse_nvidia_smi(text: str) -> list[Device]:
    """Parse `nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits`."""
    devices = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4 or not parts[0].isdigit():
            continue
        memory = parts[-1]
        devices.append(
            Device(
                index=int(parts[0]),
                uuid=parts[1],
                name=", ".join(parts[2:-1]),  # a name may itself contain a comma
                memory_mib=int(memory) if memory.isdigit() else 0,
            )
        )
    return devices


def _detect_nvidia_smi() -> list[Device]:
    query = "--query-gpu=index,uuid,name,memory.total"
    try:
        out = subprocess.run(
            ["nvidia-smi", query, "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):  # not installed, no driver, hung driver
        return []
    return parse_nvidia_smi(out.stdout)


def restrict_to_visible(devices: Sequence[Device], visible: str | None) -> list[Device]:
    """The devices a `CUDA_VISIBLE_DEVICES` value leaves, in its order, each named by its token.

    Tokens are indices or (prefixes of) UUIDs as CUDA accepts them. `""` or `-1` hide every
    device; a token that matches no detected device (a MIG instance UUID, say) is kept as an
    opaque device so the worker still gets exactly what the server was given.
    """
    if visible is None:
        return list(devices)
    pool: list[Device] = []
    for raw in visible.split(","):
        token = raw.strip()
        if not token:
            continue
        if token.lstrip("-").isdigit():
            if int(token) < 0:  # CUDA stops enumerating at the first invalid index
                break
            found = [d for d in devices if d.index == int(token)]
        else:
            found = [d for d in devices if d.uuid and (d.uuid == token or d.uuid.startswith(token))]
        if found:
            pool.append(
                Device(found[0].index, found[0].name, found[0].uuid, found[0].memory_mib, token)
            )
        elif devices:
            pool.append(Device(-1, f"device {token}", visible_id=token))
    return pool


def detect_gpus(environ: dict[str, str] | None = None) -> list[Device]:
    """The GPUs this process may give to workers, without initialising CUDA.

    NVML first, then `nvidia-smi`; an empty list when neither finds a device. The server's own
    `CUDA_VISIBLE_DEVICES`, if set, restricts and orders the result.
    """
    env = os.environ if environ is None else environ
    found = _detect_nvml()
    if found is None:
        found = _detect_nvidia_smi()
    return restrict_to_visible(found, env.get("CUDA_VISIBLE_DEVICES"))


def match_gpu_type(devices: Sequence[Device], gpu_type: str) -> list[Device]:
    """The devices whose name fits BentoML's `gpu_type` (e.g. `nvidia-tesla-t4`, `nvidia-a100-80gb`).

    Every word of the type except the vendor words must appear among the name's words:
    `nvidia-h100` fits "NVIDIA H100 80GB HBM3"; `nvidia-l4` does not fit "NVIDIA L40S".
    """

    def words(text: str) -> set[str]:
        return set(re.findall(r"[a-z0-9]+", text.lower())) - {"nvidia", "tesla", "geforce"}

    wanted = words(gpu_type)
    return [d for d in devices if wanted <= words(d.name)]


# --- planning ----------------------------------------------------------------------------------
def _pool_text(devices: Sequence[Device]) -> str:
    if not devices:
        return "none are visible"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    where = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
    listing = ", ".join(d.describe() for d in devices)
    return f"{len(devices)} {'is' if len(devices) == 1 else 'are'} visible{where}: {listing}"


def plan_placement(
    gpu_per_worker: float,
    workers: int,
    devices: list[Device],
    strict: bool,
    *,
    warn: Callable[[str], None] | None = None,
) -> list[WorkerPlacement]:
    """Give each of `workers` workers `gpu_per_worker` of the `devices`. Pure: no detection here.

    - `0`: no placement; workers inherit the server's environment.
    - a whole number `g`: worker `i` gets devices `[i·g, (i+1)·g)`, disjoint from every other's.
    - a fraction `f`: `floor(1/f)` workers share a device; the fewest devices that fit all workers
      are used, workers dealt round-robin across them so that load is even.
    Asking for more than exists raises `WorkerError` naming the numbers. With no device at all
    the workers run on CPU after a warning (`warn`, default `warnings.warn`), or `strict` raises.
    """
    if workers < 1:
        msg = f"workers={workers!r} must be at least 1"
        raise WorkerError(msg)
    if gpu_per_worker < 0 or math.isnan(gpu_per_worker):
        msg = f"resources.gpu={gpu_per_worker!r} must be a number of GPUs per worker: 1, 2 or a fraction such as 0.5"
        raise WorkerError(msg)
    if gpu_per_worker == 0:
        return [WorkerPlacement(i) for i in range(workers)]
    if not devices:
        msg = f"resources.gpu={gpu_per_worker:g} per worker, but no GPU was found (NVML and nvidia-smi see none)"
        if strict:
            msg += "; install the NVIDIA driver (and `pip install nvidia-ml-py`), or drop resources.gpu to run on CPU"
            raise WorkerError(msg)
        (warn or _warn)(msg + "; the workers run on CPU")
        return [WorkerPlacement(i) for i in range(workers)]
    if gpu_per_worker >= 1:
        if gpu_per_worker != int(gpu_per_worker):
            msg = f"resources.gpu={gpu_per_worker!r}: above 1 a GPU count must be whole, e.g. 2 (fractions pack several workers on one device)"
            raise WorkerError(msg)
        per = int(gpu_per_worker)
        if per * workers > len(devices):
            msg = (
                f"resources.gpu={per} per worker × workers={workers} needs {per * workers} GPUs, but {_pool_text(devices)}; "
                f"use workers={max(1, len(devices) // per)}, or a fraction such as resources={{'gpu': 0.5}} to share devices"
            )
            raise WorkerError(msg)
        return [_placed(i, tuple(devices[i * per : (i + 1) * per]), 1.0) for i in range(workers)]
    per_device = math.floor(1 / gpu_per_worker + _EPS)
    needed = math.ceil(workers / per_device)
    if needed > len(devices):
        msg = (
            f"resources.gpu={gpu_per_worker:g} per worker packs {per_device} workers on a GPU, so workers={workers} need "
            f"{needed} GPUs, but {_pool_text(devices)}; use workers={per_device * len(devices)} or a smaller fraction"
        )
        raise WorkerError(msg)
    return [_placed(i, (devices[i % needed],), gpu_per_worker) for i in range(workers)]


def _placed(worker: int, devices: tuple[Device, ...], share: float) -> WorkerPlacement:
    env = {"CUDA_VISIBLE_DEVICES": ",".join(d.cuda_id for d in devices)}
    if "CUDA_DEVICE_ORDER" not in os.environ:  # a user's explicit order also ordered their tokens
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    return WorkerPlacement(worker, devices, share, env)


def _warn(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)
