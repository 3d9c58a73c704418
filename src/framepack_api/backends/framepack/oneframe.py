"""One-frame inference: sample a single latent frame "some time later" than a clean image latent.

``HunyuanVideoFramepackPipeline`` only samples whole sections, so this module calls the pipeline's
components directly: its text/image encoders and VAE, its scheduler, and the transformer with
FramePack's index layout (the RoPE time index of every latent passed explicitly).

FramePack's layout for one section (padding 0), by RoPE time index::

    0            the clean input image latent ("pre")
    1 … W        the window being sampled; one-frame inference samples ONE latent at target_index
    W+1          the clean "post" latent (zeros: nothing known yet)
    W+2 … W+3    2x-compressed history (zeros)
    W+4 … W+19   4x-compressed history (zeros)

Kisekaeichi adds a reference image latent as a further clean latent at ``reference_index``.

What it shares with the section loop (``section_loop.py``) it takes from there: the execution device,
text encoding (each distinct prompt once) and the resolution-dependent timestep shift ``mu``; the
denoising loop itself is denoise.py's, which both use. One-frame passes ``rs`` = 0 (plain CFG): its
parameters have no re-scale.
A RoPE batch (``targets``: one target index per item) samples several indices in one forward pass
through ``rope_batch.batched_rope``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from framepack_api.backends.framepack.denoise import denoise
from framepack_api.backends.framepack.loader import LoadedModel
from framepack_api.backends.framepack.rope_batch import batched_rope
from framepack_api.backends.framepack.section_loop import TextEmbeds, encode_text, sigma_shift_mu
from framepack_api.backends.framepack.section_loop import execution_device as pipe_device

HISTORY_2X = 2
HISTORY_4X = 16


@dataclass(frozen=True)
class Layout:
    """Which clean latents go where (RoPE time indices) around the one sampled latent."""

    target_index: int
    window: int
    use_2x: bool = True
    use_4x: bool = True
    use_post: bool = True
    reference_index: int | None = None

    @property
    def post_index(self) -> int:
        return self.window + 1

    def indices_2x(self) -> torch.Tensor:
        return torch.arange(self.window + 2, self.window + 2 + HISTORY_2X)

    def indices_4x(self) -> torch.Tensor:
        start = self.window + 2 + HISTORY_2X
        return torch.arange(start, start + HISTORY_4X)


@dataclass
class Conditioning:
    """The encoded images: the clean latent at index 0, its SigLIP embedding, an optional reference."""

    start_latent: torch.Tensor  # (1, C, 1, h, w), float32, already scaled by the VAE factor
    image_embeds: torch.Tensor  # (1, tokens, dim)
    reference_latent: torch.Tensor | None = None  # (1, C, 1, h, w)


def execution_device(model: LoadedModel) -> torch.device:
    return pipe_device(model.pipe)


def pixels_to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB image → (1, 3, H, W) in [-1, 1], the range the VAE and the pipeline's encode_image take."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)


@torch.no_grad()
def encode_latent(model: LoadedModel, image: Image.Image) -> torch.Tensor:
    """VAE latent of one image (its distribution's mode: deterministic, unlike sample())."""
    vae = model.pipe.vae
    pixels = pixels_to_tensor(image).unsqueeze(2).to(execution_device(model), vae.dtype)
    latent = vae.encode(pixels).latent_dist.mode() * vae.config.scaling_factor
    return latent.float()


@torch.no_grad()
def encode_conditioning(model: LoadedModel, image: Image.Image,
                        reference: Image.Image | None = None) -> Conditioning:
    pipe = model.pipe
    device = execution_device(model)
    embeds = pipe.encode_image(pixels_to_tensor(image).to(device), device=device)
    return Conditioning(
        start_latent=encode_latent(model, image),
        image_embeds=embeds.to(pipe.transformer.dtype),
        reference_latent=encode_latent(model, reference) if reference is not None else None,
    )


def mask_to_latent(mask: Image.Image, latent: torch.Tensor) -> torch.Tensor:
    """A grayscale mask (white = keep, black = ignore) at the latent's size, shaped to multiply it.

    Lanczos, as musubi-tuner resizes its one-frame masks."""
    height, width = latent.shape[-2:]
    small = mask.convert("L").resize((width, height), Image.Resampling.LANCZOS)
    values = torch.from_numpy(np.asarray(small, dtype=np.float32) / 255.0)
    return values.to(latent.device)[None, None, None]


def initial_noise(seeds: list[int], shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """One noise latent per seed, each from its own CPU generator: an image's noise does not depend
    on which other images share its forward pass (or on the device)."""
    noise = [torch.randn((1, *shape), generator=torch.Generator("cpu").manual_seed(seed)) for seed in seeds]
    return torch.cat(noise).to(device)


@contextlib.contextmanager
def without_history(transformer: Any, drop_2x: bool, drop_4x: bool) -> Iterator[None]:
    """Let the transformer run without 2x and/or 4x history latents.

    diffusers' forward computes rotary embeddings only for the history it is given and then passes all
    of them on unconditionally, so leaving one out raises UnboundLocalError. The caller passes a one-frame
    placeholder instead, and this drops it again where the tokens are packed, for the ``with`` body only.
    """
    if not (drop_2x or drop_4x):
        yield
        return
    pack = type(transformer)._pack_history_states

    def packed(hidden: Any, clean: Any, history_2x: Any, history_4x: Any, *rest: Any) -> Any:
        return pack(transformer, hidden, clean, None if drop_2x else history_2x,
                    None if drop_4x else history_4x, *rest)

    transformer._pack_history_states = packed
    try:
        yield
    finally:
        del transformer._pack_history_states


def _clean_latents(cond: Conditioning, layout: Layout, ref_weight: torch.Tensor | float,
                   start_weight: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
    latents = [cond.start_latent * start_weight]
    indices = [0]
    if layout.reference_index is not None:
        reference = cond.reference_latent if cond.reference_latent is not None else torch.zeros_like(latents[0])
        latents.append(reference * ref_weight)
        indices.append(layout.reference_index)
    if layout.use_post:
        latents.append(torch.zeros_like(cond.start_latent))
        indices.append(layout.post_index)
    return torch.cat(latents, dim=2), torch.tensor(indices)


def one_frame_shift(model: LoadedModel, latent_height: int, latent_width: int, frames: int = 1) -> float:
    """The shift FramePack/musubi-tuner use for ``frames`` latents of this size (one-frame: 1).

    FramePack's resolution-dependent ``mu`` (its ``calculate_flux_mu``, which musubi-tuner's one-frame
    inference uses unchanged; the section loop's ``sigma_shift_mu``) is exponentiated into a static shift:
    mu grows linearly from 0.5 at 256 tokens to 1.15 at 4096 tokens, capped at log 7 (the scheduler config's
    base/max figures, which are FramePack's own). The token count is frames × h × w / 4 (2×2 patches); at
    1216×704 pixels (152×88 latents, 3344 tokens) this is exp(1.0227) ≈ 2.78.
    """
    shape = torch.empty(1, 1, frames, latent_height, latent_width, device="meta")
    return math.exp(sigma_shift_mu(model.pipe, shape))


def one_frame_scheduler(model: LoadedModel, latent_height: int, latent_width: int, steps: int) -> Any:
    """A fresh scheduler of the pipeline's class with FramePack's one-frame schedule set.

    Passing ``mu`` to the pipeline's scheduler does nothing with HunyuanVideo's real config (static
    shift 7.0, no dynamic shifting), so the shift is made static here instead: linear sigmas shifted by
    ``one_frame_shift``, i.e. exactly FramePack's ``exp(mu) / (exp(mu) + 1/t - 1)``. A private
    scheduler also keeps the shared one's step state untouched.
    """
    base = model.pipe.scheduler
    scheduler = type(base).from_config(base.config, shift=one_frame_shift(model, latent_height, latent_width),
                                       use_dynamic_shifting=False)
    sigmas = np.linspace(1.0, 0.0, steps + 1)[:-1].tolist()
    scheduler.set_timesteps(sigmas=sigmas, device=execution_device(model))
    return scheduler


@dataclass
class Sampling:
    steps: int
    cfg: float
    gs: float
    negative_prompt: str = ""
    reference_weight: torch.Tensor | float = 1.0  # transfer strength × source mask
    start_weight: torch.Tensor | float = 1.0  # target mask


def batch_text(model: LoadedModel, prompts: Sequence[str]) -> TextEmbeds:
    """The batch's text embeddings, each distinct prompt encoded once (as the section loop does)."""
    pipe = model.pipe
    device = execution_device(model)
    encoded = {prompt: encode_text(pipe, prompt, device) for prompt in dict.fromkeys(prompts)}
    rows = [encoded[prompt] for prompt in prompts]
    return TextEmbeds(torch.cat([r.embeds for r in rows]), torch.cat([r.pooled for r in rows]),
                      torch.cat([r.mask for r in rows]))


def target_rows(layout: Layout, targets: Sequence[int] | None, batch: int) -> torch.Tensor:
    """``indices_latents``: 1-D when every item samples at one index (the transformer's own path), else
    one row per item (a RoPE batch, see rope_batch.py)."""
    chosen = list(targets) if targets is not None else [layout.target_index] * batch
    if len(chosen) != batch:
        raise ValueError(f"{len(chosen)} target indices for {batch} images")
    if len(set(chosen)) == 1:
        return torch.tensor(chosen[:1])
    return torch.tensor(chosen)[:, None]


@torch.no_grad()
def sample_latents(model: LoadedModel, prompts: list[str], seeds: list[int], cond: Conditioning,
                   layout: Layout, sampling: Sampling, on_step: Callable[[int], None],
                   targets: Sequence[int] | None = None) -> torch.Tensor:
    """Denoise one latent per prompt in ONE batched forward pass per step; returns (B, C, 1, h, w).

    ``targets`` (one per prompt) overrides ``layout.target_index`` item by item: a RoPE batch."""
    transformer = model.pipe.transformer
    device, dtype = execution_device(model), transformer.dtype
    batch = len(prompts)

    text = batch_text(model, prompts)
    negative = None
    if sampling.cfg > 1.0:
        negative = batch_text(model, [sampling.negative_prompt] * batch)

    start = cond.start_latent
    channels, height, width = start.shape[1], start.shape[3], start.shape[4]
    clean, clean_indices = _clean_latents(cond, layout, sampling.reference_weight, sampling.start_weight)
    # Dropped history gets a one-frame placeholder that without_history removes again (see there).
    history_2x = torch.zeros(1, channels, HISTORY_2X if layout.use_2x else 1, height, width, device=device)
    history_4x = torch.zeros(1, channels, HISTORY_4X if layout.use_4x else 1, height, width, device=device)
    indices_2x = layout.indices_2x() if layout.use_2x else torch.tensor([0])
    indices_4x = layout.indices_4x() if layout.use_4x else torch.tensor([0])
    indices_latents = target_rows(layout, targets, batch)
    conditioning: dict[str, Any] = {
        "image_embeds": cond.image_embeds.expand(batch, -1, -1),
        "indices_latents": indices_latents,
        "guidance": torch.full((batch,), sampling.gs * 1000.0, device=device, dtype=dtype),
        "latents_clean": clean.expand(batch, -1, -1, -1, -1).to(dtype),
        "indices_latents_clean": clean_indices,
        "latents_history_2x": history_2x.expand(batch, -1, -1, -1, -1).to(dtype),
        "indices_latents_history_2x": indices_2x,
        "latents_history_4x": history_4x.expand(batch, -1, -1, -1, -1).to(dtype),
        "indices_latents_history_4x": indices_4x,
        "return_dict": False,
    }

    latents = initial_noise(seeds, (channels, 1, height, width), device)
    scheduler = one_frame_scheduler(model, height, width, sampling.steps)

    with (without_history(transformer, drop_2x=not layout.use_2x, drop_4x=not layout.use_4x),
          batched_rope(transformer, batch if indices_latents.ndim == 2 else 1)):
        latents = denoise(transformer, scheduler, latents, text, negative, sampling.cfg, 0.0, conditioning,
                          lambda step, _latents: on_step(step))
    return latents


@torch.no_grad()
def decode_latents(model: LoadedModel, latents: torch.Tensor) -> list[np.ndarray]:
    """(B, C, 1, h, w) latents → B uint8 RGB arrays. One image at a time bounds the VAE's memory."""
    vae = model.pipe.vae
    images = []
    for latent in latents.split(1):
        pixels = vae.decode(latent.to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]
        frame = ((pixels[0, :, 0].float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
        images.append(frame.permute(1, 2, 0).cpu().numpy())
    return images
