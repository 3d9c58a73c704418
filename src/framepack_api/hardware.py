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


# The tiny model's own limit. Its weights are random, so its output is noise at any size; past this
# a CPU spends minutes and gigabytes on nothing (the OpenAI SDK's default 1280x720 ran a 24 GB machine
# out of memory). Requests above it are scaled down, not refused, so every dialect's default works.
TINY_MAX_RESOLUTION = 128  # the tiny model's own default resolution


def resolution_cap(settings: Settings) -> int:
    """The largest bucket resolution (and image side) jobs get on this server's model."""
    if effective_model(settings) == "tiny":
        return min(settings.max_resolution, TINY_MAX_RESOLUTION)
    return settings.max_resolution


def capped_image_size(settings: Settings, width: int, height: int) -> tuple[int, int]:
    """width×height scaled down (aspect kept, multiples of 16) so that neither side exceeds the tiny
    model's limit; unchanged with the real model."""
    if effective_model(settings) != "tiny" or max(width, height) <= TINY_MAX_RESOLUTION:
        return width, height
    scale = TINY_MAX_RESOLUTION / max(width, height)
    return _side(width * scale), _side(height * scale)


def _side(value: float) -> int:
    # Multiples of 16 (VAE x8, 2x2 patches), at least 64 and at most the cap.
    return max(64, min(TINY_MAX_RESOLUTION, int(value) // 16 * 16))
