"""FramePack through diffusers: presets and loading, the tiny model, and the video job."""

from framepack_api.backends.framepack.backend import FramepackBackend
from framepack_api.backends.framepack.loader import LoadedModel, load_model, resolve_preset
from framepack_api.backends.framepack.video import generate_video

__all__ = ["FramepackBackend", "LoadedModel", "generate_video", "load_model", "resolve_preset"]
