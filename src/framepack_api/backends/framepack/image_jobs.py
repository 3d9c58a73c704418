"""The three image jobs of seed 002 on one-frame inference: single image, batch, kisekaeichi transfer.

Each writes PNGs (parameters in a tEXt chunk) into the run's workdir and returns them as a JobOutput:
``{"image": ...}`` for one image, ``{"image_000": ..., ..., "zip": ...}`` for a batch or a RoPE batch
(a single-image job with ``rope_batch``: one image per target index, in ascending index order).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from framepack_api.backends.base import JobOutput, Progress, RunContext
from framepack_api.backends.framepack.loader import LoadedModel, SamplingMode
from framepack_api.backends.framepack.lora import LoraManager
from framepack_api.backends.framepack.oneframe import (
    Conditioning,
    Layout,
    Sampling,
    decode_latents,
    encode_conditioning,
    mask_to_latent,
    sample_latents,
)
from framepack_api.errors import JobCancelled
from framepack_api.media.images import find_nearest_bucket, load_rgb, resize_and_center_crop
from framepack_api.media.png import write_png, write_zip
from framepack_api.params import PARAMS_BY_TYPE, ImageBatchParams, ImageParams, ImageTransferParams, JobType
from framepack_api.params.image import OneFrameFields, round_side

log = logging.getLogger(__name__)

# Text to image: FramePack is an image-to-video model and always continues from a clean frame; without
# an input image that frame is a flat mid-grey canvas, which carries no content of its own.
NEUTRAL_CANVAS = (128, 128, 128)
IMAGE_SAMPLING_MODE: SamplingMode = "reverse"  # the FramePack (non-F1) transformer


def draw_seed(seed: int | None) -> int:
    return secrets.randbelow(2**32) if seed is None or seed < 0 else seed


def layout_for(params: OneFrameFields, reference_index: int | None = None) -> Layout:
    window = params.latent_window_size
    target = params.target_index if params.target_index is not None else window
    return Layout(target_index=target, window=window, use_2x=not params.no_2x, use_4x=not params.no_4x,
                  use_post=not params.no_post, reference_index=reference_index)


def settings_record(params: OneFrameFields, width: int, height: int, layout: Layout,
                    model: LoadedModel, loras: list[dict[str, Any]]) -> dict[str, Any]:
    """The settings part of each PNG's ``parameters`` (prompt and seed are per image)."""
    record = params.model_dump(mode="json", exclude={"prompt", "prompts", "seed", "seeds", "lora_paths",
                                                     "lora_scales", "negative_prompt", "rope_batch",
                                                     "rope_batch_size"})
    record.update(width=width, height=height, target_index=layout.target_index, model=model.preset,
                  loras=loras)
    return record


def run_items(model: LoadedModel, prompts: list[str], seeds: list[int], cond: Conditioning, layout: Layout,
              sampling: Sampling, batch_size: int, ctx: RunContext,
              targets: Sequence[int] | None = None) -> list[np.ndarray]:
    """Sample ``prompts`` in passes of up to ``batch_size`` images (one batched forward per step each);
    ``targets`` gives each item its own target index (a RoPE batch)."""
    passes = [range(i, min(i + batch_size, len(prompts))) for i in range(0, len(prompts), batch_size)]
    images: list[np.ndarray] = []
    for number, items in enumerate(passes, start=1):
        if ctx.cancelled():
            raise JobCancelled()

        def on_step(step: int, number: int = number, items: range = items) -> None:
            ctx.progress(Progress(step=step, total_steps=sampling.steps, section=number,
                                  total_sections=len(passes),
                                  message=f"images {items.start + 1}-{items.stop} of {len(prompts)}: "
                                          f"step {step}/{sampling.steps}"))
            if ctx.cancelled():
                raise JobCancelled()

        latents = sample_latents(model, [prompts[i] for i in items], [seeds[i] for i in items], cond, layout,
                                 sampling, on_step, None if targets is None else [targets[i] for i in items])
        images += decode_latents(model, latents)
    return images


def _png(out_dir: Path, name: str, pixels: np.ndarray, prompt: str, negative: str, seed: int,
         settings: dict[str, Any]) -> Path:
    parameters = {"prompt": prompt, "negative_prompt": negative, "seed": seed, "settings": settings}
    return write_png(pixels, out_dir / name, parameters)


def generate_image(model: LoadedModel, params: ImageParams, image: Image.Image | None, ctx: RunContext,
                   loras: list[dict[str, Any]]) -> JobOutput:
    started = time.perf_counter()
    width, height = round_side(params.width), round_side(params.height)
    canvas = (resize_and_center_crop(load_rgb(image), width, height) if image is not None
              else Image.new("RGB", (width, height), NEUTRAL_CANVAS))
    seed = draw_seed(params.seed)
    ctx.seed(seed)
    layout = layout_for(params)
    cond = encode_conditioning(model, canvas)
    sampling = Sampling(steps=params.steps, cfg=params.cfg, gs=params.gs, negative_prompt=params.negative_prompt)
    settings = {**settings_record(params, width, height, layout, model, loras), "job_type": "image",
                "source": "input_image" if image is not None else "neutral_canvas"}
    targets = params.target_indices()
    if targets is not None:
        return _rope_batch(model, params, cond, layout, sampling, seed, targets, settings, ctx, started)
    [pixels] = run_items(model, [params.prompt], [seed], cond, layout, sampling, 1, ctx)
    path = _png(ctx.workdir, "image.png", pixels, params.prompt, params.negative_prompt, seed, settings)
    info = {"width": width, "height": height, "images": 1, "target_index": layout.target_index,
            "model": model.preset, "loras": loras, "seconds": round(time.perf_counter() - started, 4)}
    return JobOutput(files={"image": path}, seed=seed, info=info)


def _rope_batch(model: LoadedModel, params: ImageParams, cond: Conditioning, layout: Layout, sampling: Sampling,
                seed: int, targets: list[int], settings: dict[str, Any], ctx: RunContext,
                started: float) -> JobOutput:
    """FramePack-eichi's RoPE batch: image i samples at ``targets[i]``, all with the job's one seed (as eichi
    keeps the seed fixed in this mode), so image i equals a single image job at that target index."""
    images = run_items(model, [params.prompt] * len(targets), [seed] * len(targets), cond, layout, sampling,
                       params.rope_batch_size, ctx, targets)
    files: dict[str, Path] = {}
    for i, (pixels, target) in enumerate(zip(images, targets, strict=True)):
        files[f"image_{i:03d}"] = _png(ctx.workdir, f"image_{i:03d}.png", pixels, params.prompt,
                                       params.negative_prompt, seed,
                                       {**settings, "index": i, "target_index": target, "rope_batch": True})
    files["zip"] = write_zip(list(files.values()), ctx.workdir / "images.zip")
    info = {"width": settings["width"], "height": settings["height"], "images": len(images),
            "target_indices": targets, "rope_batch_size": params.rope_batch_size, "model": model.preset,
            "loras": settings["loras"], "seconds": round(time.perf_counter() - started, 4)}
    return JobOutput(files=files, seed=seed, info=info)


def generate_batch(model: LoadedModel, params: ImageBatchParams, image: Image.Image | None, ctx: RunContext,
                   loras: list[dict[str, Any]]) -> JobOutput:
    """One image per prompt, all from the same start image (FramePack-FastAPI's batch) or canvas."""
    started = time.perf_counter()
    width, height = round_side(params.width), round_side(params.height)
    prompts = params.prompts
    # The API draws missing seeds at submit time; this covers jobs made any other way.
    seeds = [draw_seed(params.seeds[i] if i < len(params.seeds) else None) for i in range(len(prompts))]
    ctx.seed(seeds[0])  # the job's seed column holds the first; info.seeds has them all
    layout = layout_for(params)
    canvas = (resize_and_center_crop(load_rgb(image), width, height) if image is not None
              else Image.new("RGB", (width, height), NEUTRAL_CANVAS))
    cond = encode_conditioning(model, canvas)
    sampling = Sampling(steps=params.steps, cfg=params.cfg, gs=params.gs, negative_prompt=params.negative_prompt)
    images = run_items(model, prompts, seeds, cond, layout, sampling, params.batch_size, ctx)
    settings = {**settings_record(params, width, height, layout, model, loras), "job_type": "image_batch",
                "source": "input_image" if image is not None else "neutral_canvas"}
    files: dict[str, Path] = {}
    for i, (pixels, prompt, seed) in enumerate(zip(images, prompts, seeds, strict=True)):
        files[f"image_{i:03d}"] = _png(ctx.workdir, f"image_{i:03d}.png", pixels, prompt,
                                       params.negative_prompt, seed, {**settings, "index": i})
    files["zip"] = write_zip(list(files.values()), ctx.workdir / "images.zip")
    info = {"width": width, "height": height, "images": len(images), "seeds": seeds,
            "batch_size": params.batch_size, "target_index": layout.target_index, "model": model.preset,
            "loras": loras, "seconds": round(time.perf_counter() - started, 4)}
    return JobOutput(files=files, seed=seeds[0], info=info)


def transfer_image(model: LoadedModel, params: ImageTransferParams, target: Image.Image, source: Image.Image,
                   masks: dict[str, Image.Image], ctx: RunContext, loras: list[dict[str, Any]]) -> JobOutput:
    """Kisekaeichi: the subject (target) at clean index 0, the reference (source) at history_index."""
    started = time.perf_counter()
    target_rgb = load_rgb(target)
    if params.width is not None and params.height is not None:
        width, height = round_side(params.width), round_side(params.height)
    else:
        height, width = find_nearest_bucket(target_rgb.height, target_rgb.width, model.default_resolution)
    subject = resize_and_center_crop(target_rgb, width, height)
    strength = params.transfer_strength
    # Strength 0 means no reference at all: the slot holds zeros, FramePack's "nothing here".
    reference = resize_and_center_crop(load_rgb(source), width, height) if strength > 0 else None
    cond = encode_conditioning(model, subject, reference)
    start_weight: Any = 1.0
    reference_weight: Any = strength
    if "target_mask" in masks:
        start_weight = mask_to_latent(masks["target_mask"], cond.start_latent)
    if "source_mask" in masks and cond.reference_latent is not None:
        reference_weight = strength * mask_to_latent(masks["source_mask"], cond.reference_latent)
    layout = layout_for(params, reference_index=params.history_index)
    seed = draw_seed(params.seed)
    ctx.seed(seed)
    sampling = Sampling(steps=params.steps, cfg=params.cfg, gs=params.gs, negative_prompt=params.negative_prompt,
                        reference_weight=reference_weight, start_weight=start_weight)
    [pixels] = run_items(model, [params.prompt], [seed], cond, layout, sampling, 1, ctx)
    settings = {**settings_record(params, width, height, layout, model, loras), "job_type": "image_transfer",
                "masks": sorted(masks)}
    path = _png(ctx.workdir, "image.png", pixels, params.prompt, params.negative_prompt, seed, settings)
    info = {"width": width, "height": height, "images": 1, "target_index": layout.target_index,
            "history_index": params.history_index, "transfer_strength": strength, "masks": sorted(masks),
            "model": model.preset, "loras": loras, "seconds": round(time.perf_counter() - started, 4)}
    return JobOutput(files={"image": path}, seed=seed, info=info)


def _open(path: Path) -> Image.Image:
    with Image.open(path) as img:
        img.load()
        return img.copy()


def run_image_job(model: LoadedModel, lora_manager: LoraManager, job_type: JobType, params: dict[str, Any],
                  inputs: dict[str, Path], ctx: RunContext) -> JobOutput:
    """Validate an image job's params, apply its LoRAs for the run, and run it."""
    if ctx.cancelled():
        raise JobCancelled()
    parsed = PARAMS_BY_TYPE[job_type].model_validate(params)
    if not isinstance(parsed, OneFrameFields):
        raise ValueError(f"not an image job type: {job_type!r}")
    # One-frame inference and kisekaeichi are made for the non-F1 FramePack weights (musubi-tuner says
    # so): swap back after a forward (F1) video job. Before the LoRAs: a swap would drop them.
    model.use_sampling_mode(IMAGE_SAMPLING_MODE)
    with lora_manager.applied(model.pipe.transformer, parsed.lora_pairs()) as loras:
        image = _open(inputs["input_image"]) if "input_image" in inputs else None
        if isinstance(parsed, ImageParams):
            return generate_image(model, parsed, image, ctx, loras)
        if isinstance(parsed, ImageBatchParams):
            return generate_batch(model, parsed, image, ctx, loras)
        if isinstance(parsed, ImageTransferParams):
            for name in ("target_image", "source_image"):
                if name not in inputs:
                    raise ValueError(f"a transfer job needs a '{name}' input")
            masks: dict[str, Image.Image] = {
                name: _open(inputs[name]) for name in ("target_mask", "source_mask") if name in inputs}
            return transfer_image(model, parsed, _open(inputs["target_image"]), _open(inputs["source_image"]),
                                  masks, ctx, loras)
    raise ValueError(f"not an image job type: {job_type!r}")
