"""Model presets and loading: the real FramePack (reverse / F1 forward) or the tiny random pipeline.

Where the weights live (gpu, offload, group, leaf) is decided and applied by ``memory.py``.

One ``LoadedModel`` holds one ``HunyuanVideoFramepackPipeline``. The two FramePack checkpoints differ
only in the transformer (same text encoders, VAE and SigLIP), so a worker keeps one pipeline and swaps
the transformer when a job asks for the other sampling mode: ``LoadedModel.use_sampling_mode``.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from framepack_api.backends.framepack import memory
from framepack_api.backends.framepack.memory import FreeBytes, Placement
from framepack_api.backends.framepack.quiet import quiet_model_stack, siglip_image_processor_class
from framepack_api.backends.framepack.tiny import HUNYUAN_DIR, SIGLIP_DIR, TRANSFORMER_DIR, ensure_tiny_model
from framepack_api.hardware import auto_device
from framepack_api.settings import Settings

log = logging.getLogger(__name__)

Preset = Literal["tiny", "framepack", "framepack-f1"]
SamplingMode = Literal["reverse", "forward"]

REAL_DEFAULT_RESOLUTION = 640
TINY_DEFAULT_RESOLUTION = 128

# Which sampling mode each real preset's transformer was trained for.
PRESET_MODE: dict[str, SamplingMode] = {"framepack": "reverse", "framepack-f1": "forward"}
MODE_PRESET: dict[SamplingMode, Preset] = {"reverse": "framepack", "forward": "framepack-f1"}


def resolve_preset(settings: Settings) -> Preset:
    """The preset to load: ``auto`` means the real reverse model with CUDA, else the tiny one."""
    if settings.model != "auto":
        return settings.model
    if torch.cuda.is_available():
        return "framepack"
    log.warning(
        "FRAMEPACK_API_MODEL=auto and no CUDA device: using the TINY random-weight model. "
        "Videos will be noise. Set FRAMEPACK_API_MODEL=framepack on a GPU machine for real output."
    )
    return "tiny"


def resolve_device(settings: Settings, preset: Preset) -> torch.device:
    if settings.device != "auto":
        return torch.device(settings.device)
    # The tiny model runs on the CPU unless a device is named: it is there to work without a GPU.
    if preset == "tiny":
        return torch.device("cpu")
    return torch.device(auto_device())  # CUDA, then Apple's MPS, then the CPU


@dataclass
class LoadedModel:
    pipe: Any  # HunyuanVideoFramepackPipeline (diffusers has no type stubs)
    preset: Preset
    is_tiny: bool
    device: torch.device
    default_resolution: int
    dtype: torch.dtype
    placement: Placement = "cpu"
    # The sampling mode the pipe's current transformer was trained for; None = serves both (tiny).
    transformer_mode: SamplingMode | None = None
    # Loads the transformer for a sampling mode (real presets only).
    transformer_loader: Callable[[SamplingMode], Any] | None = field(default=None, repr=False)
    # Free device memory for group mode's per-job planning; None = measure CUDA (see memory.py).
    free_bytes: FreeBytes | None = field(default=None, repr=False)

    def prepare_memory(self, preserve_gb: float) -> dict[str, Any]:
        """Apply a job's ``gpu_memory_preservation`` (group mode) and describe the memory layout."""
        return memory.prepare_job(self.pipe, self.placement, self.device, preserve_gb, self.free_bytes)

    def use_sampling_mode(self, mode: SamplingMode) -> None:
        """Make sure the pipe's transformer is the one for ``mode``, swapping it if needed.

        Only one transformer is kept in memory (each is ~26 GB in bf16): the old one is dropped before
        the new one is loaded.
        """
        if self.transformer_mode is None or self.transformer_mode == mode:
            return
        if self.transformer_loader is None:
            raise ValueError(f"model {self.preset} cannot sample in {mode} mode")
        log.info("swapping the transformer: %s -> %s", self.transformer_mode, mode)
        memory.release(self.pipe, self.placement, "transformer")
        # Drop the old transformer before loading the new one: two would not fit next to each other.
        self.pipe.transformer = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        transformer = self.transformer_loader(mode)
        # register_modules, not setattr: after a None, setattr would leave the config entry empty.
        self.pipe.register_modules(transformer=transformer)
        if self.placement == "offload":
            memory.place_pipeline(self.pipe, "offload", self.device)
        elif self.placement == "group":
            memory.plan_transformer(transformer, self.device, memory.DEFAULT_PRESERVE_GB, self.free_bytes)
        elif self.placement == "leaf":
            memory.place_pipeline(self.pipe, "leaf", self.device)
        else:
            transformer.to(self.device)
        self.transformer_mode = mode
        self.preset = MODE_PRESET[mode]


def load_llama_tokenizer(hunyuan_repo: str) -> Any:
    """The Llama tokenizer of a HunyuanVideo repo, exactly as its ``tokenizer.json`` defines it.

    The repo's ``tokenizer_config.json`` says ``LlamaTokenizerFast``, and transformers 5's
    ``LlamaTokenizerFast`` replaces the file's ByteLevel pre-tokenizer with Metaspace: every prompt loses
    its spaces ("a cat in a garden" -> "acatinagarden"; transformers issues 45488/48206). The generic
    fast class takes ``tokenizer.json`` as it is, on transformers 4 and 5 alike.
    """
    from transformers import PreTrainedTokenizerFast

    # The pipeline crops the prompt template from the left and reads the mask assuming right padding.
    return PreTrainedTokenizerFast.from_pretrained(hunyuan_repo, subfolder="tokenizer", padding_side="right")


def load_tiny(settings: Settings) -> LoadedModel:
    """The tiny model, through the same ``from_pretrained`` calls as the real presets (fp32, CPU)."""
    from diffusers import HunyuanVideoFramepackPipeline, HunyuanVideoFramepackTransformer3DModel
    from transformers import SiglipVisionModel

    SiglipImageProcessor = siglip_image_processor_class()
    path = ensure_tiny_model(settings.models_dir)
    hunyuan, siglip = str(path / HUNYUAN_DIR), str(path / SIGLIP_DIR)
    pipe = HunyuanVideoFramepackPipeline.from_pretrained(
        hunyuan,
        transformer=HunyuanVideoFramepackTransformer3DModel.from_pretrained(
            str(path / TRANSFORMER_DIR), torch_dtype=torch.float32),
        feature_extractor=SiglipImageProcessor.from_pretrained(siglip, subfolder="feature_extractor"),
        image_encoder=SiglipVisionModel.from_pretrained(siglip, subfolder="image_encoder",
                                                        torch_dtype=torch.float32),
        tokenizer=load_llama_tokenizer(hunyuan),
        torch_dtype=torch.float32,
    )
    device = resolve_device(settings, "tiny")
    sizes = memory.ModelSizes.of(list(memory.torch_modules(pipe).values()))
    placement = memory.choose_placement(settings.memory_mode, device, sizes, memory.DEFAULT_PRESERVE_GB)
    memory.place_pipeline(pipe, placement, device)
    pipe.set_progress_bar_config(disable=True)
    return LoadedModel(
        pipe=pipe,
        preset="tiny",
        is_tiny=True,
        device=device,
        default_resolution=settings.default_resolution or TINY_DEFAULT_RESOLUTION,
        dtype=torch.float32,
        placement=placement,
        transformer_mode=None,  # the tiny transformer serves both sampling modes
    )


def transformer_repo(settings: Settings, mode: SamplingMode) -> str:
    return settings.transformer_repo if mode == "reverse" else settings.transformer_f1_repo


def load_transformer(settings: Settings, mode: SamplingMode) -> Any:
    """The FramePack transformer for ``mode`` in bf16 (the checkpoints' repos hold it at the root)."""
    from diffusers import HunyuanVideoFramepackTransformer3DModel

    return HunyuanVideoFramepackTransformer3DModel.from_pretrained(
        transformer_repo(settings, mode), torch_dtype=torch.bfloat16
    )


def load_real(settings: Settings, preset: Preset) -> LoadedModel:
    """Load the real FramePack pipeline the way diffusers' HunyuanVideoFramepackPipeline docs do.

    Text encoders, tokenizers, VAE and scheduler come from the HunyuanVideo diffusers repo in fp16 (the
    Llama tokenizer through ``load_llama_tokenizer``, which keeps its ByteLevel pre-tokenizer);
    SigLIP (image_encoder / feature_extractor) from flux_redux_bfl in fp16; the transformer in bf16.
    """
    from diffusers import HunyuanVideoFramepackPipeline
    from transformers import SiglipVisionModel

    SiglipImageProcessor = siglip_image_processor_class()
    mode = PRESET_MODE[preset]
    transformer = load_transformer(settings, mode)
    feature_extractor = SiglipImageProcessor.from_pretrained(
        settings.siglip_repo, subfolder="feature_extractor"
    )
    image_encoder = SiglipVisionModel.from_pretrained(
        settings.siglip_repo, subfolder="image_encoder", torch_dtype=torch.float16
    )
    pipe = HunyuanVideoFramepackPipeline.from_pretrained(
        settings.hunyuan_repo,
        transformer=transformer,
        feature_extractor=feature_extractor,
        image_encoder=image_encoder,
        tokenizer=load_llama_tokenizer(settings.hunyuan_repo),
        torch_dtype=torch.float16,
    )
    pipe.set_progress_bar_config(disable=True)
    device = resolve_device(settings, preset)
    # gpu_memory_preservation is a per-job parameter in FramePack; at load time the default (6 GB) applies.
    sizes = memory.ModelSizes.of(list(memory.torch_modules(pipe).values()))
    placement = memory.choose_placement(settings.memory_mode, device, sizes, memory.DEFAULT_PRESERVE_GB)
    memory.place_pipeline(pipe, placement, device)
    return LoadedModel(
        pipe=pipe,
        preset=preset,
        is_tiny=False,
        device=device,
        default_resolution=settings.default_resolution or REAL_DEFAULT_RESOLUTION,
        dtype=torch.bfloat16,
        placement=placement,
        transformer_mode=mode,
        transformer_loader=lambda m: load_transformer(settings, m),
    )


def load_model(settings: Settings) -> LoadedModel:
    """Load the preset ``settings.model`` resolves to (see ``resolve_preset``)."""
    quiet_model_stack()
    preset = resolve_preset(settings)
    if preset == "tiny":
        return load_tiny(settings)
    return load_real(settings, preset)
