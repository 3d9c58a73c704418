"""What the model and device settings mean on this machine, decided without loading a model.

The API node may be installed without torch (`pip install framepack-api[server]`): nothing here imports
torch unless it is installed, and then only when asked (importing it costs seconds).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from pathlib import Path

from framepack_api.settings import Settings

log = logging.getLogger(__name__)

TINY_WARNING = (
    "No CUDA device: using the TINY model (random weights, output is noise). "
    "Set FRAMEPACK_API_MODEL=framepack on a machine with a GPU for real videos."
)


def torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


def nvidia_driver_present() -> bool:
    """An NVIDIA driver is loaded (Linux) — the torch-free guess of an API node without the model stack."""
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


@functools.lru_cache(maxsize=1)
def cuda_available() -> bool:
    if not torch_installed():
        return nvidia_driver_present()
    import torch  # deferred: see the module docstring

    return bool(torch.cuda.is_available())


@functools.lru_cache(maxsize=1)
def mps_available() -> bool:
    """Apple's Metal backend (macOS on Apple silicon)."""
    if not torch_installed():
        return False
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def choose_device(cuda: bool, mps: bool) -> str:
    """`device=auto` for a real model: CUDA, then Apple's MPS, then the CPU."""
    if cuda:
        return "cuda"
    if mps:
        return "mps"
    return "cpu"


def auto_device() -> str:
    return choose_device(cuda_available(), mps_available())


def effective_model(settings: Settings) -> str:
    """The preset a worker will load: tiny, framepack (F1 is chosen per job by sampling_mode).

    `auto` is the real model only with CUDA: on Apple silicon set MODEL=framepack (it then runs on MPS).
    An API node without torch guesses CUDA from the NVIDIA driver; when the workers run elsewhere, set
    MODEL explicitly there (docs/DEPLOY.md).
    """
    if settings.model == "tiny":
        return "tiny"
    if settings.model == "auto":
        return "framepack" if cuda_available() else "tiny"
    return "framepack"


def default_resolution(settings: Settings) -> int:
    if settings.default_resolution is not None:
        return settings.default_resolution
    return 128 if effective_model(settings) == "tiny" else 640

