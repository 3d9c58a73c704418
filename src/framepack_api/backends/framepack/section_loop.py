"""FramePack's section loop, run by this project on the components a loaded pipeline holds.

``HunyuanVideoFramepackPipeline.__call__`` samples a whole video with one prompt and an empty
history. Owning the loop lets every section have its own prompt (timestamped prompts) and gives the
per-step and per-section hooks (previews, partial videos, cancellation) without wrapping the
pipeline. The components are the pipeline's own loaded objects (text encoders, SigLIP, VAE,
scheduler, transformer), so memory modes, LoRAs and the first-block cache apply unchanged.

The layout follows FramePack's ``demo_gradio.py`` (``reverse``, inverted anti-drifting) and
``demo_gradio_f1.py`` (``forward``). Every section samples ``window`` new latent frames conditioned
on the start image's latent at RoPE index 0 and on the history, compressed 1x / 2x / 4x:

    reverse: [start | blank padding | window being sampled | 1x (1) | 2x (2) | 4x (16)]
             sections are made last-first; the history is what comes *after* the window in time,
             and the very first one made sees the end image (if any) as its 1x latent; a
             keyframe is the 1x latent of the section it anchors (params/keyframes.py).
    forward: [start | 4x (16) | 2x (2) | 1x (1) | window being sampled]
             sections are made in time order; the history is what came before. Continuing a
             video (``ContinueFrom``), the history starts as that video's latents.

With one prompt and the same generator the frames equal the pipeline call's (tests/backends/
test_section_loop.py): the random draws happen in the same order (start latent, end latent, then
each section's noise).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from framepack_api.backends.framepack.denoise import TextEmbeds, denoise
from framepack_api.backends.framepack.progress_hooks import SectionHistory

HISTORY_SIZES = (1, 2, 16)  # latent frames of the 1x, 2x and 4x compressed history
MAX_SEQUENCE_LENGTH = 256  # Llama tokens of a prompt (the pipeline's default)
# Resolution-dependent timestep shift: mu grows linearly with the token count of a section, capped
# at log(7) (FramePack's and the pipeline's figures); it only acts on schedulers with dynamic shifting.
SHIFT_TOKENS = (256, 4096)
SHIFT_MU = (0.5, 1.15)
MAX_EXP_SHIFT = 7.0


@dataclass(frozen=True)
class SectionJob:
    """What one run of the loop makes. ``section_prompts`` is in time order, one per section."""

    start: Image.Image
    end: Image.Image | None
    section_prompts: list[str]
    negative_prompt: str | None  # None: no true CFG (one transformer call per step)
    height: int
    width: int
    window: int
    steps: int
    true_cfg: float
    guidance: float
    reverse: bool
    # Reverse only: (section, 0-based in time order, image) pairs; the image is that section's 1x
    # clean latent, as the end image is the last section's.
    keyframes: tuple[tuple[int, Image.Image], ...] = ()
    rescale: float = 0.0  # FramePack's `rs`, used with true CFG only
    # Forward only: continue an existing video instead of starting from ``start``'s latent.
    continues: ContinueFrom | None = None

    @property
    def sections(self) -> int:
        return len(self.section_prompts)


@dataclass(frozen=True)
class ContinueFrom:
    """An encoded video that forward sampling continues (video extension, F1's way).

    ``start`` (1, C, 1, h, w) is the video's first frame latent, kept at RoPE index 0 as F1 keeps its
    start image; ``history`` (1, C, L, h, w) the latents of the video's end in time order (only the
    last 16 + 2 + 1 condition a section). The last ``context`` history latents are decoded again in
    front of the first new section, so that its frames are decoded with the video's end as causal
    context (the caller drops those ``1 + 4 * (context - 1)`` re-decoded frames).
    """

    start: torch.Tensor
    history: torch.Tensor
    context: int


# on_step(section made, 1-based in making order; step, 1-based; the section's latents after it)
StepHook = Callable[[int, int, torch.Tensor], None]
# on_section(the decoded history after each section)
SectionHook = Callable[[SectionHistory], None]


def execution_device(pipe: Any) -> torch.device:
    return torch.device(pipe._execution_device)


@torch.no_grad()
def encode_text(pipe: Any, prompt: str, device: torch.device) -> TextEmbeds:
    """Llama hidden states, CLIP pooled output and mask of one prompt, in the transformer's dtype."""
    embeds, pooled, mask = pipe.encode_prompt(prompt=prompt, device=device,
                                              max_sequence_length=MAX_SEQUENCE_LENGTH)
    dtype = pipe.transformer.dtype
    return TextEmbeds(embeds.to(dtype), pooled.to(dtype), mask.to(dtype))


def sigma_shift_mu(pipe: Any, noise: torch.Tensor) -> float:
    """The scheduler's ``mu`` for one section's latents (B, C, F, h, w)."""
    tokens = noise.shape[2] * noise.shape[3] * noise.shape[4] / pipe.transformer.config.patch_size ** 2
    config = pipe.scheduler.config
    low_tokens, high_tokens = config.get("base_image_seq_len", SHIFT_TOKENS[0]), config.get(
        "max_image_seq_len", SHIFT_TOKENS[1])
    low_mu, high_mu = config.get("base_shift", SHIFT_MU[0]), config.get("max_shift", SHIFT_MU[1])
    mu = low_mu + (high_mu - low_mu) / (high_tokens - low_tokens) * (tokens - low_tokens)
    return float(min(mu, math.log(MAX_EXP_SHIFT)))


@dataclass
class SectionLayout:
    """RoPE indices and clean latents of one section (the transformer's conditioning inputs)."""

    indices_latents: torch.Tensor
    latents_clean: torch.Tensor
    indices_clean: torch.Tensor
    history_2x: torch.Tensor
    indices_2x: torch.Tensor
    history_4x: torch.Tensor
    indices_4x: torch.Tensor


def reverse_paddings(sections: int) -> list[int]:
    """Blank windows between the start image and each section, in making order (FramePack's rule:
    beyond four sections the middle ones all use 2, which the model was trained with)."""
    if sections > 4:
        return [3] + [2] * (sections - 3) + [1, 0]
    return list(reversed(range(sections)))


def reverse_layout(start: torch.Tensor, history: torch.Tensor, window: int, padding: int,
                   anchor: torch.Tensor | None) -> SectionLayout:
    sizes = [1, padding * window, window, *HISTORY_SIZES]
    prefix, _blank, sampled, idx_1x, idx_2x, idx_4x = torch.arange(sum(sizes)).split(sizes)
    h1x, h2x, h4x = history[:, :, : sum(HISTORY_SIZES)].split(HISTORY_SIZES, dim=2)
    if anchor is not None:  # the end image (first section made) or a keyframe pins the frame after the window
        h1x = anchor
    return SectionLayout(sampled, torch.cat([start, h1x], dim=2), torch.cat([prefix, idx_1x]),
                         h2x, idx_2x, h4x, idx_4x)


def forward_layout(start: torch.Tensor, history: torch.Tensor, window: int) -> SectionLayout:
    four, two, one = reversed(HISTORY_SIZES)
    sizes = [1, four, two, one, window]
    prefix, idx_4x, idx_2x, idx_1x, sampled = torch.arange(sum(sizes)).split(sizes)
    h4x, h2x, h1x = history[:, :, -sum(HISTORY_SIZES):].split([four, two, one], dim=2)
    return SectionLayout(sampled, torch.cat([start, h1x], dim=2), torch.cat([prefix, idx_1x]),
                         h2x, idx_2x, h4x, idx_4x)


@torch.no_grad()
def run_sections(pipe: Any, job: SectionJob, generator: torch.Generator, on_step: StepHook,
                 on_section: SectionHook | None = None) -> np.ndarray:
    """Sample, decode and join every section of ``job``; returns the video as uint8 (T, H, W, 3).

    ``on_step`` runs after every scheduler step and ``on_section`` after every decoded section;
    either may raise (a cancelled job) and the loop stops there.
    """
    if job.continues is not None and (job.reverse or job.end is not None):
        raise ValueError("continuing a video needs forward sampling without an end image")
    if job.continues is not None and not 1 <= job.continues.context <= job.continues.history.shape[2]:
        raise ValueError("context must be between 1 and the history's latent frames")
    device = execution_device(pipe)
    transformer, vae = pipe.transformer, pipe.vae
    dtype = transformer.dtype
    spatial, temporal = int(pipe.vae_scale_factor_spatial), int(pipe.vae_scale_factor_temporal)
    window, sections = job.window, job.sections

    # 1. Text: each distinct prompt is encoded once, however many sections use it.
    texts = {prompt: encode_text(pipe, prompt, device) for prompt in dict.fromkeys(job.section_prompts)}
    negative = encode_text(pipe, job.negative_prompt, device) if job.negative_prompt is not None else None

    # 2. Images: SigLIP embeddings and VAE latents, sampled from the latent distribution with the
    #    job's generator: start image first, then the end image, then keyframes in time order. The
    #    embedding is the mean over every pinned image: FramePack (PR 167) averages start and end,
    #    and a keyframe is an end image inside the video, so it gets the same equal share.
    start_pixels = pipe.video_processor.preprocess(job.start, job.height, job.width)
    image_embeds = pipe.encode_image(start_pixels, device=device).to(dtype)
    end_pixels = None
    if job.end is not None:
        end_pixels = pipe.video_processor.preprocess(job.end, job.height, job.width)
    keyframe_pixels = {section: pipe.video_processor.preprocess(image, job.height, job.width)
                       for section, image in sorted(job.keyframes, key=lambda pair: pair[0])}
    pinned = [p for p in (end_pixels, *keyframe_pixels.values()) if p is not None]
    for pixels in pinned:
        image_embeds = image_embeds + pipe.encode_image(pixels, device=device).to(dtype)
    if pinned:
        image_embeds = image_embeds / (1 + len(pinned))

    def vae_latent(pixels: torch.Tensor) -> torch.Tensor:
        sample = vae.encode(pixels.unsqueeze(2).to(device, vae.dtype)).latent_dist.sample(generator=generator)
        return (sample * vae.config.scaling_factor).to(device, torch.float32)

    if job.continues is None:
        start_latent = vae_latent(start_pixels)
    else:
        start_latent = job.continues.start.to(device, torch.float32)
    end_latent = vae_latent(end_pixels) if end_pixels is not None else None
    # The 1x clean latent of each anchored section (time order): the end image's is the last one's.
    anchors = {section: vae_latent(pixels) for section, pixels in keyframe_pixels.items()}
    if end_latent is not None:
        anchors[sections - 1] = end_latent

    # 3. History: zeros where nothing is known yet; forward sampling starts from the start latent.
    channels = transformer.config.in_channels
    latent_h, latent_w = job.height // spatial, job.width // spatial
    history = torch.zeros(1, channels, sum(HISTORY_SIZES), latent_h, latent_w, device=device)
    made = 0  # latent frames of the history that are real (not the initial zeros)
    if job.continues is not None:  # the video's latents are the history; `made` counts what is decoded
        history = torch.cat([history, job.continues.history.to(device, torch.float32)], dim=2)
        made = job.continues.context
    elif not job.reverse:
        history = torch.cat([history, start_latent], dim=2)
        made = 1
    # Scaled after the cast, as the pipeline does: in bf16 the product rounds differently otherwise.
    guidance = torch.tensor([job.guidance], device=device, dtype=dtype) * 1000.0
    decoded = SectionHistory(pipe, job.reverse, window)
    paddings = reverse_paddings(sections)
    sigmas = np.linspace(1.0, 0.0, job.steps + 1)[:-1]

    for k in range(sections):
        # 4. This section's place in time, prompt and conditioning. Reverse sampling makes the
        #    last section first: the k-th made is section (sections - 1 - k) in time order.
        time_index = sections - 1 - k if job.reverse else k
        text = texts[job.section_prompts[time_index]]
        last_made = k == sections - 1
        if job.reverse:
            layout = reverse_layout(start_latent, history, window, paddings[k], anchors.get(time_index))
        else:
            layout = forward_layout(start_latent, history, window)
        conditioning = {
            "image_embeds": image_embeds, "indices_latents": layout.indices_latents, "guidance": guidance,
            "latents_clean": layout.latents_clean.to(dtype), "indices_latents_clean": layout.indices_clean,
            "latents_history_2x": layout.history_2x.to(dtype), "indices_latents_history_2x": layout.indices_2x,
            "latents_history_4x": layout.history_4x.to(dtype), "indices_latents_history_4x": layout.indices_4x,
            "return_dict": False,
        }

        # 5. Denoise the window from fresh noise with the pipeline's flow-matching scheduler.
        latents = randn_tensor((1, channels, window, latent_h, latent_w), generator=generator,
                               device=device, dtype=torch.float32)
        pipe.scheduler.set_timesteps(sigmas=sigmas, device=device, mu=sigma_shift_mu(pipe, latents))
        latents = denoise(transformer, pipe.scheduler, latents, text, negative, job.true_cfg, job.rescale,
                          conditioning, functools.partial(on_step, k + 1))

        # 6. Into the history, then decode the frames this section settled. Reverse: the section
        #    made last is the video's first and gets the start latent in front of it.
        if job.reverse:
            if last_made:
                latents = torch.cat([start_latent, latents], dim=2)
            made += latents.shape[2]
            history = torch.cat([latents, history], dim=2)
            real = history[:, :, :made]
            span = slice(0, window * 2 + (1 if last_made else 0))
        else:
            made += latents.shape[2]
            history = torch.cat([history, latents], dim=2)
            real = history[:, :, -made:]
            span = slice(-window * 2, None)
        # The first decode is all there is; later ones cover two windows, the overlap re-decoded.
        to_decode = real if k == 0 else real[:, :, span]
        pixels = vae.decode(to_decode.to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]
        decoded.add(pixels)
        if on_section is not None:
            on_section(decoded)

    pipe.maybe_free_model_hooks()  # model offload: put the last component back on the CPU
    return decoded.frames(temporal)
