"""GPU discovery from recorded driver outputs, and the plan of which worker gets which device."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from framepack_api.gpus import (
    GpuDevice,
    GpuSelectionError,
    WorkerSlot,
    discover_gpus,
    parse_nvidia_smi_list,
    parse_proc_information,
    parse_visible_devices,
    plan_workers,
    read_proc_gpus,
    worker_device_label,
)

# Written for these tests in the layout nvidia-smi -L prints (UUIDs made up). GPU 1 has MIG on.
SMI = """\
GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-11111111-aaaa-bbbb-cccc-000000000000)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-22222222-aaaa-bbbb-cccc-000000000000)
  MIG 3g.20gb     Device  0: (UUID: MIG-33333333-aaaa-bbbb-cccc-000000000000)
  MIG 2g.10gb     Device  1: (UUID: MIG-44444444-aaaa-bbbb-cccc-000000000000)
GPU 2: NVIDIA GeForce RTX 4090 (UUID: GPU-55555555-aaaa-bbbb-cccc-000000000000)
"""
H100 = GpuDevice(0, "GPU-11111111-aaaa-bbbb-cccc-000000000000", "NVIDIA H100 80GB HBM3")
MIG0 = GpuDevice(1, "MIG-33333333-aaaa-bbbb-cccc-000000000000", "NVIDIA A100-SXM4-40GB MIG 3g.20gb", 0)
MIG1 = GpuDevice(1, "MIG-44444444-aaaa-bbbb-cccc-000000000000", "NVIDIA A100-SXM4-40GB MIG 2g.10gb", 1)
RTX = GpuDevice(2, "GPU-55555555-aaaa-bbbb-cccc-000000000000", "NVIDIA GeForce RTX 4090")

# The kernel driver's information file, in its tab-aligned layout (values made up).
PROC_INFO = """\
Model: \t\t NVIDIA L4
IRQ:   \t\t 156
GPU UUID: \t GPU-{uuid}
Video BIOS: \t 95.04.29.00.04
Bus Type: \t PCIe
Bus Location: \t {bus}
Device Minor: \t {minor}
GPU Excluded:\t No
"""


def test_nvidia_smi_list_gives_gpus_and_replaces_a_mig_gpu_by_its_mig_devices() -> None:
    assert parse_nvidia_smi_list(SMI) == [H100, MIG0, MIG1, RTX]
    assert parse_nvidia_smi_list("") == []
    assert parse_nvidia_smi_list("No devices were found\n") == []


def test_labels_and_selectors() -> None:
    assert H100.label == "cuda:0 (GPU-11111111-aaaa-bbbb-cccc-000000000000)"
    assert MIG1.label == "cuda:1 MIG 1 (MIG-44444444-aaaa-bbbb-cccc-000000000000)"
    assert GpuDevice(3, None).label == "cuda:3" and GpuDevice(3, None).selector == "3"
    assert RTX.selector == RTX.uuid  # a UUID survives renumbering; the index does not


def test_proc_driver_files_are_numbered_in_pci_bus_order() -> None:
    texts = [("0000:c1:00.0", PROC_INFO.format(uuid="bbbb", bus="0000:c1:00.0", minor=0)),
             ("0000:41:00.0", PROC_INFO.format(uuid="aaaa", bus="0000:41:00.0", minor=1)),
             ("0000:81:00.0", "Model: \t NVIDIA L4\nGPU UUID: \t ???\n")]  # driver not initialised yet
    assert parse_proc_information(texts) == [GpuDevice(0, "GPU-aaaa", "NVIDIA L4"),
                                             GpuDevice(1, None, "NVIDIA L4"),
                                             GpuDevice(2, "GPU-bbbb", "NVIDIA L4")]


def test_proc_driver_directory_is_read(tmp_path: Path) -> None:
    for bus, uuid in (("0000:02:00.0", "bbbb"), ("0000:01:00.0", "aaaa")):
        (tmp_path / bus).mkdir()
        (tmp_path / bus / "information").write_text(PROC_INFO.format(uuid=uuid, bus=bus, minor=0))
    found = discover_gpus({}, nvidia_smi=lambda: None, proc_gpus=lambda: read_proc_gpus(tmp_path))
    assert [(d.index, d.uuid) for d in found] == [(0, "GPU-aaaa"), (1, "GPU-bbbb")]
    assert read_proc_gpus(tmp_path / "absent") == []


@pytest.mark.parametrize(("value", "entries"), [
    ("0,2", ["0", "2"]),
    (" 1 , GPU-55555555-aaaa ", ["1", "GPU-55555555-aaaa"]),
    ("MIG-33333333-aaaa-bbbb-cccc-000000000000", ["MIG-33333333-aaaa-bbbb-cccc-000000000000"]),
    ("MIG-GPU-22222222-aaaa/1/0", ["MIG-GPU-22222222-aaaa/1/0"]),  # the pre-R470 MIG form
    ("", []), ("-1", []), ("NoDevFiles", []),  # how schedulers say "no GPU"
    ("0,-1,1", ["0"]),  # CUDA stops at the first invalid entry
])
def test_cuda_visible_devices_is_read_as_cuda_reads_it(value: str, entries: list[str]) -> None:
    assert parse_visible_devices(value) == entries


def test_discovery_order_visible_devices_then_nvidia_smi_then_proc() -> None:
    no_proc: list[tuple[str, str]] = []
    assert discover_gpus({}, nvidia_smi=lambda: SMI, proc_gpus=lambda: no_proc) == [H100, MIG0, MIG1, RTX]
    # The variable restricts and orders; nvidia-smi names what it lists.
    assert discover_gpus({"CUDA_VISIBLE_DEVICES": f"2,{MIG0.uuid}"}, nvidia_smi=lambda: SMI) == [RTX, MIG0]
    # Without a driver tool the variable's own entries are kept.
    assert discover_gpus({"CUDA_VISIBLE_DEVICES": "3,GPU-x"}, nvidia_smi=lambda: None, proc_gpus=lambda: no_proc) \
        == [GpuDevice(3, None), GpuDevice(None, "GPU-x")]
    assert discover_gpus({"CUDA_VISIBLE_DEVICES": ""}, nvidia_smi=lambda: SMI) == []
    assert discover_gpus({}, nvidia_smi=lambda: None, proc_gpus=lambda: no_proc) == []


def _envs(slots: list[WorkerSlot], device: str = "auto") -> list[dict[str, str]]:
    return [slot.env(device) for slot in slots]


def test_auto_plans_one_worker_per_visible_gpu_each_pinned_by_uuid() -> None:
    envs = _envs(plan_workers("auto", [], [H100, MIG0, RTX]))
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == [H100.uuid, MIG0.uuid, RTX.uuid]
    assert all(e["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID" for e in envs)
    assert [e["FRAMEPACK_API_WORKER_GPU"] for e in envs] == [H100.label, MIG0.label, RTX.label]


def test_auto_without_a_gpu_is_one_unpinned_worker() -> None:
    slots = plan_workers("auto", [], [])
    assert len(slots) == 1 and slots[0].gpu is None and slots[0].env() == {}


def test_gpus_pick_devices_by_index_or_uuid_in_the_order_given() -> None:
    slots = plan_workers("auto", ["2", H100.uuid or ""], [H100, MIG0, MIG1, RTX])
    assert [s.gpu for s in slots] == [RTX, H100]
    # A number of workers spreads them over the chosen GPUs in turn.
    assert [s.gpu for s in plan_workers(3, ["0", "2"], [H100, RTX])] == [H100, RTX, H100]
    assert plan_workers(0, ["0"], [H100]) == []


def test_a_number_without_gpus_keeps_unpinned_workers() -> None:
    assert [s.gpu for s in plan_workers(2, [], [H100, RTX])] == [None, None]


def test_gpus_on_a_machine_without_a_driver_are_taken_as_given() -> None:
    envs = _envs(plan_workers("auto", ["0", "1"], []))
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0", "1"]
    assert [e["FRAMEPACK_API_WORKER_GPU"] for e in envs] == ["cuda:0", "cuda:1"]


def test_a_named_cuda_device_becomes_the_workers_only_one() -> None:
    [slot] = plan_workers("auto", ["1"], [])
    assert slot.env("cuda:1")["FRAMEPACK_API_DEVICE"] == "cuda"
    assert "FRAMEPACK_API_DEVICE" not in slot.env("auto")


@pytest.mark.parametrize(("entries", "message"), [
    (["7"], "GPU '7' is not visible here (visible: cuda:0"),
    (["1"], "GPU '1' is not visible"),  # GPU 1 is split into MIG devices: name one of those
    (["0", H100.uuid], "listed twice"),
])
def test_gpus_that_name_no_visible_device_are_refused(entries: list[str], message: str) -> None:
    with pytest.raises(GpuSelectionError, match=message.replace("(", r"\(")):
        plan_workers("auto", entries, [H100, MIG0, MIG1, RTX])


def test_all_means_every_visible_gpu() -> None:
    assert [s.gpu for s in plan_workers("auto", ["all"], [H100, RTX])] == [H100, RTX]
    assert [s.gpu for s in plan_workers("auto", ["all"], [])] == [None]


def test_the_recorded_device_is_the_pinned_gpu_when_the_model_is_on_cuda() -> None:
    pinned = {"FRAMEPACK_API_WORKER_GPU": RTX.label, "CUDA_VISIBLE_DEVICES": RTX.uuid or ""}
    assert worker_device_label("cuda", pinned) == RTX.label
    assert worker_device_label("cpu", pinned) == "cpu"  # the tiny model on the CPU says so
    assert worker_device_label("cuda:0", {"CUDA_VISIBLE_DEVICES": "3"}) == "cuda:0 (CUDA_VISIBLE_DEVICES=3)"
    assert worker_device_label("cuda", {}) == "cuda"
    assert worker_device_label(None, pinned) is None


def test_discovery_imports_no_torch() -> None:
    script = ("import sys; from framepack_api import cli, gpus; gpus.discover_gpus(); "
              "assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
