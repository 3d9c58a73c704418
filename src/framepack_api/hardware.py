"""What the model setting means on this machine, decided without loading a model."""

from __future__ import annotations

import functools
import logging

from framepack_api.settings import Settings

log = logging.getLogger(__name__)

TINY_WARNING = (
    "No CUDA device: using the TINY model (random weights, output is noise). "
    "Set FRAMEPACK_API_MODEL=framepack on a machine with a GPU for real videos."
)


@functools.lru_cache(maxsize=1)
def cuda_available() -> bool:
    import torch  # deferred: importing torch costs seconds, and only this needs it in the API

    return bool(torch.cuda.is_available())


def effective_model(settings: Settings) -> str:
    """The preset a worker will load: tiny, framepack (F1 is chosen per job by sampling_mode)."""
    if settings.model == "tiny":
        return "tiny"
    if settings.model == "auto":
        return "framepack" if cuda_available() else "tiny"
    return "framepack"


def default_resolution(settings: Settings) -> int:
    if settings.default_resolution is not None:
        return settings.default_resolution
    return 128 if effective_model(settings) == "tiny" else 640
