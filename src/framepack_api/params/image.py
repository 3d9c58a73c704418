"""Parameters of the image job types (seed 002): one-frame generation, batches, kisekaeichi transfer.

Field names and defaults follow seed 002 (``steps=30``, ``cfg=1.0``, ``width=1216``, ``height=704``,
``batch_size=4``, ``transfer_strength=0.7``). Seed 002's defaults are a contract that its clients rely on,
so ``transfer_strength`` keeps 0.7 even though the reference implementations (FramePack-eichi's kisekaeichi,
musubi-tuner's one-frame inference) do not scale the reference latent: 1.0 reproduces them (docs/IMAGES.md).
The one-frame knobs (``target_index``, ``no_2x``, ...) are FramePack-eichi's / musubi-tuner's names for
the same index layout.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from framepack_api.params.fields import FiniteFloat, NoBool, StrictInt, Text

MAX_LORAS = 8
SIZE_MULTIPLE = 16  # VAE ×8 and the transformer's 2×2 patches
MIN_SIDE = 64
MAX_SIDE = 4096  # the hard schema cap; a server may set a lower IMAGE_MAX_SIDE
MAX_TARGET_INDEX = 64  # FramePack-eichi's cap on its RoPE value
MAX_ROPE_BATCH = 64  # images one RoPE batch job makes (as many as a prompt batch)


class LoraFields(BaseModel):
    """LoRA selection, shared by image and video jobs."""

    # allow_inf_nan=False: NaN and infinities are refused in every float field of every job type.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    lora_paths: list[Text] = Field(default_factory=list, max_length=MAX_LORAS,
                                  description="LoRA files by name, relative to the server's LORA_DIR "
                                              "(see GET /loras). Absolute paths and '..' are refused.")
    lora_scales: list[FiniteFloat] = Field(default_factory=list, max_length=MAX_LORAS,
                                     description="One scale per LoRA (default 1.0 each); 0 disables one.")

    @model_validator(mode="after")
    def _scales_match_paths(self) -> LoraFields:
        if self.lora_scales and len(self.lora_scales) != len(self.lora_paths):
            raise ValueError(f"lora_scales has {len(self.lora_scales)} values for "
                             f"{len(self.lora_paths)} lora_paths")
        if any(not -10.0 <= s <= 10.0 for s in self.lora_scales):
            raise ValueError("each lora_scale must be between -10 and 10")
        return self

    def lora_pairs(self) -> list[tuple[str, float]]:
        scales = self.lora_scales or [1.0] * len(self.lora_paths)
        return list(zip(self.lora_paths, scales, strict=True))


class OneFrameFields(LoraFields):
    """What every image job shares: text, sampling and FramePack's one-frame index layout."""

    negative_prompt: Text = Field("", max_length=4000, description="Used only when cfg > 1.")
    steps: StrictInt = Field(30, ge=1, le=100, description="Sampling steps.")
    cfg: FiniteFloat = Field(1.0, ge=1.0, le=32.0, description="Real classifier-free guidance scale (1 = off).")
    gs: FiniteFloat = Field(10.0, ge=1.0, le=32.0, description="Distilled guidance scale (FramePack's `gs`).")
    width: StrictInt = Field(1216, ge=MIN_SIDE, le=MAX_SIDE,
                       description="Output width; rounded to a multiple of 16.")
    height: StrictInt = Field(704, ge=MIN_SIDE, le=MAX_SIDE,
                        description="Output height; rounded to a multiple of 16.")
    latent_window_size: StrictInt = Field(9, ge=1, le=33,
                                    description="FramePack's window; places the post and 2x/4x slots.")
    target_index: Annotated[int, Field(ge=0, le=MAX_TARGET_INDEX), NoBool] | None = Field(None,
                                     description="RoPE time index of the sampled frame: how far 'later' "
                                                 "than the input it is. Default: latent_window_size.")
    no_2x: bool = Field(False, description="Drop the 2x-compressed history latents.")
    no_4x: bool = Field(False, description="Drop the 4x-compressed history latents.")
    no_post: bool = Field(False, description="Drop the empty 'post' clean latent after the window.")


TargetIndex = Annotated[int, Field(ge=0, le=MAX_TARGET_INDEX), NoBool]


class RopeBatch(BaseModel):
    """Which RoPE target indices a RoPE batch samples: ``indices``, or ``start`` with ``end`` or ``count``.

    Checked field by field (in declaration order), so an error names the field at fault."""

    model_config = ConfigDict(extra="forbid")

    indices: list[TargetIndex] | None = Field(None, min_length=1, max_length=MAX_ROPE_BATCH,
                                              description="Explicit target indices; made in ascending order.")
    start: TargetIndex | None = Field(None, description="First target index of a range.")
    step: Annotated[int, Field(ge=1, le=MAX_TARGET_INDEX), NoBool] = Field(1, description="Distance between "
                                                                                         "indices of a range.")
    end: TargetIndex | None = Field(None, description="Last target index of a range (inclusive: reached only "
                                                      "when start + k*step lands on it).")
    count: Annotated[int, Field(ge=1, le=MAX_ROPE_BATCH), NoBool] | None = Field(
        None, description="Number of indices of a range, instead of end.")

    @field_validator("indices")
    @classmethod
    def _distinct(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("lists a target index twice")
        return value

    @field_validator("end")
    @classmethod
    def _end_after_start(cls, value: int | None, info: ValidationInfo) -> int | None:
        start = info.data.get("start")
        if value is not None and start is not None and value < start:
            raise ValueError(f"{value} is below start ({start})")
        return value

    @field_validator("count")
    @classmethod
    def _count_fits(cls, value: int | None, info: ValidationInfo) -> int | None:
        start, step = info.data.get("start"), info.data.get("step")
        if value is not None and start is not None and step is not None:
            last = start + (value - 1) * step
            if last > MAX_TARGET_INDEX:
                raise ValueError(f"{value} indices from {start} in steps of {step} end at {last}, "
                                 f"above the largest target index ({MAX_TARGET_INDEX})")
        return value

    @model_validator(mode="after")
    def _one_way(self) -> RopeBatch:
        if self.indices is not None:
            if self.start is not None or self.end is not None or self.count is not None:
                raise ValueError("give rope_batch.indices, or rope_batch.start with end or count; not both")
        elif self.start is None:
            raise ValueError("give rope_batch.indices, or rope_batch.start with end or count")
        elif (self.end is None) == (self.count is None):
            raise ValueError("a range needs exactly one of rope_batch.end and rope_batch.count")
        elif self.end is not None and len(range(self.start, self.end + 1, self.step)) > MAX_ROPE_BATCH:
            raise ValueError(f"rope_batch.start..end makes more than {MAX_ROPE_BATCH} indices")
        return self

    def target_indices(self) -> list[int]:
        """The indices to sample, ascending: the order of the job's images."""
        if self.indices is not None:
            return sorted(self.indices)
        assert self.start is not None
        stop = self.end + 1 if self.end is not None else self.start + (self.count or 1) * self.step
        return list(range(self.start, stop, self.step))


class ImageParams(OneFrameFields):
    """POST /api/generate-image: one image, from an input image or from a neutral canvas.

    With ``rope_batch`` (FramePack-eichi's RoPE batch): one image per target index, same prompt, same
    seed, same input, sampled ``rope_batch_size`` indices per batched forward pass."""

    prompt: Text = Field("", max_length=4000, description="What the image shows.")
    seed: StrictInt = Field(-1, ge=-1, le=2**32 - 1, description="-1 draws a random seed; the job records it.")
    has_input_image: bool = Field(False, description="Set by the server when input_image was sent.")
    rope_batch: RopeBatch | None = Field(None, description="Sample one image per RoPE target index of this range "
                                                           "or list (instead of target_index); every image uses "
                                                           "the job's one seed.")
    rope_batch_size: StrictInt = Field(4, ge=1, le=8, description="RoPE batch: target indices per batched forward "
                                                                  "pass (bounds memory; seed 002's rope_batch_size).")

    @model_validator(mode="after")
    def _rope_batch_or_target(self) -> ImageParams:
        if self.rope_batch is not None and self.target_index is not None:
            raise ValueError("give target_index or rope_batch, not both")
        return self

    def target_indices(self) -> list[int] | None:
        return self.rope_batch.target_indices() if self.rope_batch is not None else None


class ImageBatchParams(OneFrameFields):
    """POST /api/batch-images: one image per prompt, ``batch_size`` images per forward pass."""

    prompts: list[Text] = Field(min_length=1, max_length=64, description="One image per prompt.")
    seeds: list[StrictInt] = Field(default_factory=list, max_length=64,
                             description="Seeds by position; missing ones (or -1) are drawn at random "
                                         "and recorded.")
    batch_size: StrictInt = Field(4, ge=1, le=8, description="Images per batched forward pass.")
    has_input_image: bool = Field(False, description="Set by the server when input_image was sent.")

    @model_validator(mode="after")
    def _check_lists(self) -> ImageBatchParams:
        if len(self.seeds) > len(self.prompts):
            raise ValueError(f"{len(self.seeds)} seeds for {len(self.prompts)} prompts")
        if any(not -1 <= s <= 2**32 - 1 for s in self.seeds):
            raise ValueError("each seed must be -1 or between 0 and 2**32-1")
        if any(len(p) > 4000 for p in self.prompts):
            raise ValueError("each prompt must be at most 4000 characters")
        return self


class ImageTransferParams(OneFrameFields):
    """POST /api/transfer-image (kisekaeichi): the reference's clothing/style onto the subject."""

    prompt: Text = Field("", max_length=4000, description="Describes the wanted result.")
    seed: StrictInt = Field(-1, ge=-1, le=2**32 - 1, description="-1 draws a random seed; the job records it.")
    transfer_strength: float = Field(0.7, ge=0.0, le=1.0,
                                     description="Multiplies the reference image's latent (after its mask): "
                                                 "1 = as FramePack-eichi and musubi-tuner do, 0 = no reference at "
                                                 "all. The default 0.7 is seed 002's.")
    history_index: StrictInt = Field(16, ge=1, le=64,
                               description="RoPE time index of the reference (clean) latent.")
    # Kisekaeichi samples just after the subject, without compressed history: FramePack-eichi's defaults.
    target_index: Annotated[int, Field(ge=0, le=MAX_TARGET_INDEX), NoBool] | None = Field(  # type: ignore[assignment]
        1, description="RoPE time index of the sampled frame.")
    no_2x: bool = Field(True, description="Drop the 2x-compressed history latents.")
    no_4x: bool = Field(True, description="Drop the 4x-compressed history latents.")
    no_post: bool = Field(True, description="Kisekaeichi puts the reference where 'post' would be.")
    width: Annotated[int, Field(ge=MIN_SIDE, le=MAX_SIDE), NoBool] | None = Field(None,  # type: ignore[assignment]
                              description="Output width; default: the target image's bucket.")
    height: Annotated[int, Field(ge=MIN_SIDE, le=MAX_SIDE), NoBool] | None = Field(None,  # type: ignore[assignment]
                               description="Output height; default: the target image's bucket.")
    has_source_mask: bool = Field(False, description="Set by the server when source_mask was sent.")
    has_target_mask: bool = Field(False, description="Set by the server when target_mask was sent.")


def round_side(value: int, max_side: int = MAX_SIDE) -> int:
    """Nearest multiple of 16 within [MIN_SIDE, max_side] (the model needs multiples of 16)."""
    upper = max(MIN_SIDE, max_side // SIZE_MULTIPLE * SIZE_MULTIPLE)
    return min(upper, max(MIN_SIDE, round(value / SIZE_MULTIPLE) * SIZE_MULTIPLE))
