"""Which GPUs this machine has, and which worker gets which, found without importing torch.

`serve` and `framepack-api worker --gpus` decide here how many worker processes to start and pin
each to one device through its own `CUDA_VISIBLE_DEVICES`. The API process must stay light, so
discovery reads what the driver publishes, in this order:

1. `CUDA_VISIBLE_DEVICES`, when set: exactly the devices CUDA would show this process (indices,
   `GPU-…`/`MIG-…` UUIDs; empty means none), named with `nvidia-smi` where it answers;
2. `nvidia-smi -L`: every GPU, and instead of a GPU its MIG devices where MIG is on (CUDA runs on
   the MIG devices, never on their parent);
3. `/proc/driver/nvidia/gpus/*/information`: the kernel driver's list, when the tool is missing.

Numbers are nvidia-smi's (PCI bus order); children get `CUDA_DEVICE_ORDER=PCI_BUS_ID` so that
CUDA numbers devices the same way.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

# Set by the supervisor for a pinned worker: the label of its GPU, which the worker records.
WORKER_GPU_ENV = "FRAMEPACK_API_WORKER_GPU"
PROC_GPUS = Path("/proc/driver/nvidia/gpus")
NVIDIA_SMI_TIMEOUT = 10.0

_GPU_LINE = re.compile(r"^GPU\s+(?P<index>\d+):\s*(?P<name>.*?)\s*\(UUID:\s*(?P<uuid>[^)\s]+)\)\s*$")
_MIG_LINE = re.compile(r"^\s+MIG\s+(?P<profile>\S+)\s+Device\s+(?P<index>\d+):\s*\(UUID:\s*(?P<uuid>[^)\s]+)\)\s*$")
_SELECTOR = re.compile(r"^(\d+|(GPU|MIG)-[0-9A-Za-z/-]+)$")


class GpuSelectionError(ValueError):
    """A `GPUS` entry that names no visible device (or repeats one)."""


@dataclass(frozen=True)
class GpuDevice:
    """One device a worker can be pinned to: a whole GPU or one MIG device of it."""

    index: int | None  # nvidia-smi's GPU index; None when only a UUID is known
    uuid: str | None  # GPU-… or MIG-…
    name: str = ""
    mig: int | None = None  # the MIG device's number under GPU `index`

    @property
    def selector(self) -> str:
        """What the worker's CUDA_VISIBLE_DEVICES gets: the UUID, which survives renumbering."""
        if self.uuid:
            return self.uuid
        if self.index is None:
            raise ValueError("a GPU with neither index nor UUID cannot be selected")
        return str(self.index)

    @property
    def label(self) -> str:
        """How /health and the logs name it, e.g. `cuda:1 (GPU-5d5b…)`."""
        text = "cuda" if self.index is None else f"cuda:{self.index}"
        if self.mig is not None:
            text += f" MIG {self.mig}"
        return f"{text} ({self.uuid})" if self.uuid else text

    def matches(self, entry: str) -> bool:
        if entry.isdigit():
            return self.mig is None and self.index == int(entry)
        return self.uuid is not None and self.uuid.lower() == entry.lower()


# -- parsing (pure, tested with recorded outputs) -------------------------------------------------

def parse_visible_devices(value: str) -> list[str]:
    """CUDA_VISIBLE_DEVICES's entries, as CUDA reads them: comma-separated, and the list ends at
    the first entry that is not an index or a UUID (so "" and "-1" mean no device)."""
    entries: list[str] = []
    for part in value.split(","):
        entry = part.strip()
        if not _SELECTOR.match(entry):
            break
        entries.append(entry)
    return entries


def parse_nvidia_smi_list(text: str) -> list[GpuDevice]:
    """`nvidia-smi -L`: one line per GPU, then one indented line per MIG device under it. A GPU
    with MIG devices is replaced by them."""
    devices: list[GpuDevice] = []
    gpu: GpuDevice | None = None
    migs: list[GpuDevice] = []

    def flush() -> None:
        if gpu is not None:
            devices.extend(migs or [gpu])

    for line in text.splitlines():
        if m := _GPU_LINE.match(line):
            flush()
            gpu = GpuDevice(int(m["index"]), m["uuid"], m["name"])
            migs = []
        elif (m := _MIG_LINE.match(line)) and gpu is not None:
            migs.append(GpuDevice(gpu.index, m["uuid"], f"{gpu.name} MIG {m['profile']}", int(m["index"])))
    flush()
    return devices


def parse_proc_information(texts: Sequence[tuple[str, str]]) -> list[GpuDevice]:
    """The kernel driver's `/proc/driver/nvidia/gpus/<bus id>/information` files, given as
    (bus id, text) pairs; numbered in PCI bus order, as nvidia-smi numbers them."""
    devices = []
    for index, (_bus, text) in enumerate(sorted(texts, key=lambda pair: pair[0].lower())):
        fields: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip().lower()] = value.strip()
        uuid = fields.get("gpu uuid", "")
        devices.append(GpuDevice(index, uuid if uuid.startswith("GPU-") else None, fields.get("model", "")))
    return devices


# -- discovery -------------------------------------------------------------------------------------

def run_nvidia_smi() -> str | None:
    """`nvidia-smi -L`'s output, or None where the tool is missing or fails."""
    try:
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def read_proc_gpus(root: Path = PROC_GPUS) -> list[tuple[str, str]]:
    pairs = []
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return []
    for entry in entries:
        try:
            pairs.append((entry.name, (entry / "information").read_text(errors="replace")))
        except OSError:
            continue
    return pairs


def discover_gpus(env: Mapping[str, str] | None = None,
                  nvidia_smi: Callable[[], str | None] = run_nvidia_smi,
                  proc_gpus: Callable[[], list[tuple[str, str]]] = read_proc_gpus) -> list[GpuDevice]:
    """The devices a worker started from this process could be pinned to."""
    env = os.environ if env is None else env
    listed: list[GpuDevice] | None = None

    def machine() -> list[GpuDevice]:
        nonlocal listed
        if listed is None:
            text = nvidia_smi()
            listed = parse_nvidia_smi_list(text) if text is not None else parse_proc_information(proc_gpus())
        return listed

    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return machine()
    devices = []
    for position, entry in enumerate(parse_visible_devices(visible)):
        known = next((d for d in machine() if d.matches(entry)), None)
        if known is None:  # named by the variable only: keep what it says
            known = GpuDevice(int(entry), None) if entry.isdigit() else GpuDevice(None, entry)
            log.debug("CUDA_VISIBLE_DEVICES entry %d (%s) is not in the driver's list", position, entry)
        devices.append(known)
    return devices


# -- the plan: which worker gets which device -------------------------------------------------------

@dataclass(frozen=True)
class WorkerSlot:
    """One worker process to keep running, and the device it stays on across restarts."""

    gpu: GpuDevice | None  # None: not pinned (the CPU, or whatever CUDA shows it)

    @property
    def label(self) -> str:
        return self.gpu.label if self.gpu is not None else "no pinned GPU"

    def env(self, device_setting: str = "auto") -> dict[str, str]:
        """Variables the worker process gets on top of the supervisor's environment."""
        if self.gpu is None:
            return {}
        env = {"CUDA_VISIBLE_DEVICES": self.gpu.selector, "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
               WORKER_GPU_ENV: self.gpu.label}
        if device_setting.startswith("cuda:"):
            env["FRAMEPACK_API_DEVICE"] = "cuda"  # its one visible device is cuda:0, whatever was named
        return env


def choose_gpus(entries: Sequence[str], visible: Sequence[GpuDevice]) -> list[GpuDevice]:
    """The devices a GPUS setting names. Where nothing is visible (no driver here), the entries are
    taken as given: the operator knows the machine the workers will find."""
    if list(entries) == ["all"]:
        return list(visible)
    chosen: list[GpuDevice] = []
    for entry in entries:
        if visible:
            found = next((d for d in visible if d.matches(entry)), None)
            if found is None:
                names = ", ".join(d.label for d in visible)
                raise GpuSelectionError(f"GPU {entry!r} is not visible here (visible: {names})")
        else:
            found = GpuDevice(int(entry), None) if entry.isdigit() else GpuDevice(None, entry)
        if found in chosen:
            raise GpuSelectionError(f"GPU {entry!r} is listed twice")
        chosen.append(found)
    return chosen


def plan_workers(workers: int | Literal["auto"], gpus: Sequence[str],
                 visible: Sequence[GpuDevice]) -> list[WorkerSlot]:
    """Worker processes for a `WORKERS` and a `GPUS` setting.

    - `auto`: one per chosen GPU (GPUS, else every visible one); with none, one on the CPU.
    - a number N with GPUS: N workers spread over the chosen GPUs in turn (2 per GPU: N = 2 × GPUs).
    - a number N without GPUS: N unpinned workers, as before GPUs were planned.
    """
    if workers == 0:
        return []
    if not gpus and isinstance(workers, int):
        return [WorkerSlot(None) for _ in range(workers)]
    chosen = choose_gpus(gpus, visible) if gpus else list(visible)
    if not chosen:
        return [WorkerSlot(None) for _ in range(workers if isinstance(workers, int) else 1)]
    count = workers if isinstance(workers, int) else len(chosen)
    return [WorkerSlot(chosen[i % len(chosen)]) for i in range(count)]


def worker_device_label(torch_device: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """What a worker records as its device: where its model runs, with the GPU it is pinned to."""
    env = os.environ if env is None else env
    if torch_device is None or not torch_device.startswith("cuda"):
        return torch_device
    pinned = env.get(WORKER_GPU_ENV)
    if pinned:
        return pinned
    visible = env.get("CUDA_VISIBLE_DEVICES")
    return f"{torch_device} (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else torch_device
