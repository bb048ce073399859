"""GPU placement on simulated device lists: integer, fractional, impossible and absent GPUs."""

from __future__ import annotations

import pytest

from nbserve._runtime.execution import placement
from nbserve._runtime.execution.placement import (
    Device,
    detect_gpus,
    match_gpu_type,
    parse_nvidia_smi,
    plan_placement,
    restrict_to_visible,
)
from nbserve.exceptions import WorkerError


def gpus(n: int, name: str = "NVIDIA H100 80GB HBM3") -> list[Device]:
    return [Device(index=i, name=name, uuid=f"GPU-{i}aaa-bbbb", memory_mib=81559) for i in range(n)]


def visible(plan: list[placement.WorkerPlacement]) -> list[str | None]:
    return [p.env.get("CUDA_VISIBLE_DEVICES") for p in plan]


def test_one_gpu_per_worker_gives_each_its_own_device() -> None:
    plan = plan_placement(1, 2, gpus(4), strict=False)
    assert visible(plan) == ["0", "1"]  # BentoML gives both workers "0"
    assert [p.worker for p in plan] == [0, 1]
    assert plan[0].describe() == "GPU 0 (NVIDIA H100 80GB HBM3)"


def test_several_gpus_per_worker_are_disjoint_sets() -> None:
    assert visible(plan_placement(2, 2, gpus(4), strict=False)) == ["0,1", "2,3"]


def test_placement_sets_pci_bus_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    assert plan_placement(1, 1, gpus(1), strict=False)[0].env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "FASTEST_FIRST")
    assert "CUDA_DEVICE_ORDER" not in plan_placement(1, 1, gpus(1), strict=False)[0].env


def test_fractions_pack_workers_on_the_fewest_devices_evenly() -> None:
    plan = plan_placement(0.5, 3, gpus(4), strict=False)
    assert visible(plan) == ["0", "1", "0"]
    assert all(p.share == 0.5 for p in plan)
    assert plan[0].describe() == "GPU 0 (NVIDIA H100 80GB HBM3) × 0.5"
    assert visible(plan_placement(0.25, 4, gpus(1), strict=False)) == ["0"] * 4
    # 0.33 is three to a device, not two (floating point)
    assert visible(plan_placement(0.33, 3, gpus(1), strict=False)) == ["0"] * 3


def test_more_whole_gpus_than_exist_is_an_error_naming_the_numbers() -> None:
    with pytest.raises(
        WorkerError, match=r"resources.gpu=1 per worker × workers=3 needs 3 GPUs, but 2 are visible"
    ) as info:
        plan_placement(1, 3, gpus(2), strict=False)
    assert "use workers=2" in str(info.value)
    with pytest.raises(WorkerError, match=r"needs 4 GPUs, but 1 is visible"):
        plan_placement(2, 2, gpus(1), strict=False)


def test_too_many_fractional_workers_is_an_error() -> None:
    with pytest.raises(
        WorkerError,
        match=r"packs 2 workers on a GPU, so workers=5 need 3 GPUs, but 2 are visible.*workers=4",
    ):
        plan_placement(0.5, 5, gpus(2), strict=False)


def test_non_whole_count_above_one_is_an_error() -> None:
    with pytest.raises(WorkerError, match="must be whole"):
        plan_placement(1.5, 1, gpus(2), strict=False)


def test_no_gpu_warns_and_runs_on_cpu() -> None:
    with pytest.warns(RuntimeWarning, match=r"no GPU was found.*run on CPU"):
        plan = plan_placement(1, 2, [], strict=False)
    assert [p.devices for p in plan] == [(), ()]
    assert [p.describe() for p in plan] == ["CPU", "CPU"]
    notes: list[str] = []
    plan_placement(0.5, 1, [], strict=False, warn=notes.append)
    assert len(notes) == 1


def test_no_gpu_with_strict_placement_is_an_error() -> None:
    with pytest.raises(WorkerError, match=r"no GPU was found.*drop resources.gpu"):
        plan_placement(1, 1, [], strict=True)


def test_zero_gpus_leaves_the_environment_alone() -> None:
    plan = plan_placement(0, 3, gpus(2), strict=True)
    assert [p.env for p in plan] == [{}, {}, {}]


def test_cuda_visible_devices_bounds_and_orders_the_pool() -> None:
    devices = gpus(4)
    pool = restrict_to_visible(devices, "2,0")
    assert [d.index for d in pool] == [2, 0]
    assert visible(plan_placement(1, 2, pool, strict=False)) == ["2", "0"]
    by_uuid = restrict_to_visible(devices, "GPU-3aaa")
    assert [(d.index, d.cuda_id) for d in by_uuid] == [(3, "GPU-3aaa")]
    assert restrict_to_visible(devices, "") == []
    assert [d.index for d in restrict_to_visible(devices, "1,-1,2")] == [1]  # CUDA stops at -1
    mig = restrict_to_visible(devices, "MIG-abc")
    assert [(d.index, d.cuda_id) for d in mig] == [(-1, "MIG-abc")]
    assert restrict_to_visible([], "0,1") == []  # no GPU detected: nothing to hand out
    assert restrict_to_visible(devices, None) == devices


def test_parse_nvidia_smi() -> None:
    text = "0, GPU-aaaa, NVIDIA H100 80GB HBM3, 81559\n1, GPU-bbbb, Tesla T4, 15360\n\nNo devices were found\n"
    assert parse_nvidia_smi(text) == [
        Device(0, "NVIDIA H100 80GB HBM3", "GPU-aaaa", 81559),
        Device(1, "Tesla T4", "GPU-bbbb", 15360),
    ]


def test_detection_without_nvml_or_nvidia_smi_finds_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(placement, "_detect_nvml", lambda: None)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert detect_gpus({}) == []


def test_detection_falls_back_to_nvidia_smi_and_respects_visible_devices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(placement, "_detect_nvml", lambda: None)
    monkeypatch.setattr(placement, "_detect_nvidia_smi", lambda: gpus(3))
    assert [d.index for d in detect_gpus({"CUDA_VISIBLE_DEVICES": "1"})] == [1]
    assert len(detect_gpus({})) == 3


def test_gpu_type_matching() -> None:
    devices = [Device(0, "NVIDIA H100 80GB HBM3"), Device(1, "NVIDIA L40S"), Device(2, "Tesla T4")]
    assert [d.index for d in match_gpu_type(devices, "nvidia-h100")] == [0]
    assert [d.index for d in match_gpu_type(devices, "nvidia-l4")] == []
    assert [d.index for d in match_gpu_type(devices, "nvidia-tesla-t4")] == [2]
