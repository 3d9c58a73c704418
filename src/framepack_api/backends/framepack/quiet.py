"""A worker's start without noise: the model libraries' own handlers, progress bars and known
deprecation warnings would otherwise print a screenful of lines (not in LOG_FORMAT=json) at each start."""

from __future__ import annotations

import importlib.util
import logging
import warnings
from typing import Any


def quiet_model_stack() -> None:
    """Route diffusers' and transformers' log records through the process's handler (so they follow
    LOG_FORMAT), and turn off their loading/saving progress bars (a worker has no terminal to show them)."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    for lib in (diffusers_logging, transformers_logging):
        lib.disable_default_handler()
        lib.enable_propagation()
        lib.disable_progress_bar()
    # diffusers >= 0.36 renamed `torch_dtype` to `dtype` and warns on every load; the floor this project
    # supports (0.34) knows only `torch_dtype`, so the code keeps it and the warning says nothing new.
    warnings.filterwarnings("ignore", message=r".*`torch_dtype` is deprecated", category=FutureWarning)
    # Resolving the name `SiglipImageProcessor` without torchvision warns (diffusers' FramePack pipeline
    # module imports it); the PIL processor it falls back to is the one this project uses on purpose.
    resolver = logging.getLogger("transformers.utils.import_utils")
    if not any(isinstance(f, _TorchvisionFallbackNotice) for f in resolver.filters):
        resolver.addFilter(_TorchvisionFallbackNotice())


class _TorchvisionFallbackNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision" not in record.getMessage()


def siglip_image_processor_class() -> Any:
    """SigLIP's image processor as transformers 4 had it (PIL and numpy).

    transformers 5 made `SiglipImageProcessor` a torchvision-backed class that, without torchvision,
    warns and falls back to `SiglipImageProcessorPil`; that fallback is asked for directly here."""
    import transformers

    pil = getattr(transformers, "SiglipImageProcessorPil", None)
    if pil is not None and importlib.util.find_spec("torchvision") is None:
        return pil
    return transformers.SiglipImageProcessor
