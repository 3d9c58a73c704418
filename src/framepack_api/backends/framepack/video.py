"""One FramePack image-to-video job: params + image(s) in, MP4 + thumbnail out.

``generate_video`` is the single entry point for both the job worker and the serverless handler.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from framepack_api.backends.base import JobOutput, Progress, RunContext
from framepack_api.backends.framepack.extension import (
    encode_for_extension,
    join_output,
    load_input_video,
    redecoded_frames,
)
from framepack_api.backends.framepack.loader import LoadedModel
from framepack_api.backends.framepack.progress_hooks import PartialVideoWriter
from framepack_api.backends.framepack.section_loop import ContinueFrom, SectionJob, run_sections
from framepack_api.errors import JobCancelled
from framepack_api.media.images import find_nearest_bucket, load_rgb, resize_and_center_crop
from framepack_api.media.preview import write_preview
from framepack_api.media.video import write_mp4, write_thumbnail
from framepack_api.params import VideoParams, frame_count, total_sections
from framepack_api.params.keyframes import keyframe_section
from framepack_api.params.prompt_schedule import section_prompts

log = logging.getLogger(__name__)

FPS = 30
# Relative first-block residual change below which the remaining blocks are skipped. 0.05 is diffusers'
# default and stays well under TeaCache's usual FramePack setting (0.15) in aggressiveness.
FIRST_BLOCK_CACHE_THRESHOLD = 0.05
VAE_TEMPORAL = 4  # latent frames → pixel frames; the pipeline's window length uses the same factor


def pipeline_num_frames(sections: int, latent_window_size: int) -> int:
    """The ``num_frames`` that makes the pipeline sample exactly ``sections`` sections (for comparing
    the section loop with ``HunyuanVideoFramepackPipeline.__call__``, in tests and bench).

    The pipeline computes ``ceil(num_frames / window_frames)`` sections with
    ``window_frames = (latent_window_size - 1) * 4 + 1``; a multiple of window_frames is exact.
    """
    return sections * ((latent_window_size - 1) * VAE_TEMPORAL + 1)


class StageTimer:
    """Wall time spent inside chosen modules' forwards, by stage, via torch forward hooks.

    The section loop runs encode → sample → decode for every section; hooks on the modules split
    that time without timing code in the loop.
    """

    def __init__(self, sync: bool) -> None:
        self.totals: dict[str, float] = {}
        self._sync = sync  # on CUDA, kernels run async: synchronise so wall time means compute time
        self._handles: list[Any] = []

    def watch(self, stage: str, module: torch.nn.Module | None) -> None:
        if module is None:
            return
        starts: list[float] = []

        def before(_m: torch.nn.Module, _args: Any) -> None:
            if self._sync:
                torch.cuda.synchronize()
            starts.append(time.perf_counter())

        def after(_m: torch.nn.Module, _args: Any, _out: Any) -> None:
            if self._sync:
                torch.cuda.synchronize()
            if starts:
                self.totals[stage] = self.totals.get(stage, 0.0) + time.perf_counter() - starts.pop()

        self._handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


@contextlib.contextmanager
def first_block_cache(transformer: Any, branches: int) -> Iterator[str]:
    """Enable diffusers' FirstBlockCache for one job's sampling (the TeaCache stand-in).

    The cache keeps state per ``cache_context`` name, and neither the section loop nor the pipeline
    sets one, so each transformer call is wrapped in a context here. With true CFG the loop calls the transformer
    twice per step (cond, then uncond); alternating names keeps the two branches' caches apart.
    Yields the cache's name, or ``"none"`` when this transformer cannot cache.
    """
    from diffusers.hooks import FirstBlockCacheConfig

    if not hasattr(transformer, "enable_cache") or transformer.is_cache_enabled:
        yield "none"
        return
    transformer.enable_cache(FirstBlockCacheConfig(threshold=FIRST_BLOCK_CACHE_THRESHOLD))
    calls = 0
    open_contexts: list[contextlib.AbstractContextManager[None]] = []

    def enter(_m: torch.nn.Module, _args: Any, _kwargs: Any) -> None:
        nonlocal calls
        name = "uncond" if branches == 2 and calls % 2 == 1 else "cond"
        calls += 1
        ctx = transformer.cache_context(name)
        ctx.__enter__()
        open_contexts.append(ctx)

    def leave(_m: torch.nn.Module, _args: Any, _kwargs: Any, _out: Any) -> None:
        if open_contexts:
            open_contexts.pop().__exit__(None, None, None)

    handles = [
        transformer.register_forward_pre_hook(enter, with_kwargs=True),
        transformer.register_forward_hook(leave, with_kwargs=True),
    ]
    try:
        yield "first_block_cache"
    finally:
        for handle in handles:
            handle.remove()
        while open_contexts:  # a forward that raised never reached `leave`
            open_contexts.pop().__exit__(None, None, None)
        transformer.disable_cache()


def params_metadata(params: VideoParams, seed: int, preset: str) -> dict[str, str]:
    """Container tags: the job's params (with the seed actually used) as JSON in ``comment``."""
    record = params.model_dump(mode="json")
    record["seed"] = seed
    record["model"] = preset
    return {"comment": json.dumps(record, sort_keys=True), "title": "framepack-api"}


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Frames as floats in [0, 1] (the pipeline's ``output_type="np"``) as uint8."""
    return (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def generate_video(model: LoadedModel, params: VideoParams, image: Image.Image | None,
                   end_image: Image.Image | None, out_dir: Path, ctx: RunContext, *,
                   preview_every: int = 1, partial_videos: bool = True,
                   keyframes: list[Image.Image] | None = None,
                   input_video: Path | None = None) -> JobOutput:
    """Run one FramePack image-to-video job and write ``video.mp4`` + ``thumbnail.jpg`` into ``out_dir``.

    While it runs: every ``preview_every`` sampling steps (counted across sections; 0 = never) a
    latent preview JPEG ``ctx.workdir / "preview.jpg"`` goes to ``ctx.preview``; after every section
    (when ``partial_videos``) the video so far ``ctx.workdir / "partial.mp4"`` goes to
    ``ctx.partial_video``. Both files are replaced atomically; neither changes the final video.
    ``keyframes`` are the images of ``params.keyframe_times``, in the same order.

    With ``input_video`` (an MP4) the job extends that video by ``params.video_length`` seconds
    (forward sampling from its encoded end, ``extension.py``); ``image`` is then unused.
    """
    if preview_every < 0:
        raise ValueError(f"preview_every must be >= 0, got {preview_every}")
    started = time.perf_counter()
    pipe = model.pipe
    reverse = params.sampling_mode == "reverse"
    if input_video is None and image is None:
        raise ValueError("a video job needs a start image or an input video")
    if input_video is not None and reverse:
        raise ValueError("extending a video needs sampling_mode 'forward'")
    if end_image is not None and not reverse:
        # Only inverted anti-drifting sampling (FramePack) anchors the last frame; F1 cannot.
        raise ValueError("end_image is supported only with sampling_mode 'reverse'")
    keyframes = keyframes or []
    if len(keyframes) != len(params.keyframe_times):
        raise ValueError(f"{len(keyframes)} keyframe images for {len(params.keyframe_times)} keyframe_times")
    if ctx.cancelled():
        raise JobCancelled()
    model.use_sampling_mode(params.sampling_mode)
    # After the swap and the caller's LoRAs: both make the offloading be applied anew.
    memory_info = model.prepare_memory(params.gpu_memory_preservation)

    # 1) Seed: -1 draws one; the job records the seed actually used so it can be reproduced.
    seed = secrets.randbelow(2**32) if params.seed == -1 else params.seed
    generator = torch.Generator(device="cpu").manual_seed(seed)
    ctx.seed(seed)

    # 2) Size: FramePack's bucket nearest to the input's aspect ratio, then cover + centre crop.
    resolution = params.resolution or model.default_resolution
    source = load_input_video(input_video, resolution) if input_video is not None else None
    if source is not None:  # the input video's own size, bucketed; its first frame is the start image
        height, width, start = source.height, source.width, source.first
    else:
        assert image is not None
        start_rgb = load_rgb(image)
        height, width = find_nearest_bucket(start_rgb.height, start_rgb.width, resolution)
        start = resize_and_center_crop(start_rgb, width, height)
    end = resize_and_center_crop(load_rgb(end_image), width, height) if end_image is not None else None
    pinned = [resize_and_center_crop(load_rgb(img), width, height) for img in keyframes]

    # 3) Length: FramePack's seconds → sections.
    window = params.latent_window_size
    sections = total_sections(params.video_length, window)
    expected_frames = frame_count(sections, window)

    # 4) Sample section by section. on_step runs after every step: progress, cancel, previews.
    steps = params.steps
    calls = 0
    preview_path = ctx.workdir / "preview.jpg"
    live_seconds = {"previews": 0.0}  # our own work inside the loop, reported in timings

    def on_step(section: int, step: int, latents: torch.Tensor) -> None:
        nonlocal calls
        calls += 1
        ctx.progress(Progress(step=step, total_steps=steps, section=section,
                              total_sections=sections, message="sampling"))
        if ctx.cancelled():
            raise JobCancelled()
        # The noisy latents of the current section after this step; read only.
        if preview_every and calls % preview_every == 0:
            preview_started = time.perf_counter()
            write_preview(latents, preview_path)
            live_seconds["previews"] += time.perf_counter() - preview_started
            ctx.preview(preview_path)

    true_cfg = params.cfg > 1.0
    # Each section's prompt in time order (one prompt throughout unless `prompt` is a schedule).
    prompts = section_prompts(params.prompt, sections, window)
    timer = StageTimer(sync=model.device.type == "cuda")
    for stage, name in (("encode", "text_encoder"), ("encode", "text_encoder_2"),
                        ("encode", "image_encoder"), ("sample", "transformer")):
        timer.watch(stage, getattr(pipe, name, None))
    timer.watch("encode", getattr(pipe.vae, "encoder", None))
    timer.watch("decode", getattr(pipe.vae, "decoder", None))
    continues: ContinueFrom | None = None
    encode_started = time.perf_counter()
    if source is not None:
        try:
            continues = encode_for_extension(pipe, source, window)
        except BaseException:
            timer.close()
            raise
        expected_frames += redecoded_frames(continues.context, VAE_TEMPORAL) - 1
    job = SectionJob(start=start, end=end, section_prompts=prompts,
                     negative_prompt=params.negative_prompt if true_cfg else None, height=height,
                     width=width, window=window, steps=steps, true_cfg=params.cfg, guidance=params.gs,
                     reverse=reverse, rescale=params.rs, continues=continues,
                     keyframes=tuple((keyframe_section(t, sections, window), img)
                                     for t, img in zip(params.keyframe_times, pinned, strict=True)))
    info_extra: dict[str, Any] = {}

    cache_cm = (first_block_cache(pipe.transformer, branches=2 if true_cfg else 1)
                if params.use_teacache else contextlib.nullcontext("none"))
    partial = (PartialVideoWriter(ctx.workdir / "partial.mp4", fps=FPS, crf=params.mp4_crf,
                                  report=ctx.partial_video)
               if partial_videos else None)
    call_started = encode_started
    try:
        with cache_cm as cache:
            frames = run_sections(pipe, job, generator, on_step, partial)
    finally:
        timer.close()
    call_seconds = time.perf_counter() - call_started
    if frames.shape[0] != expected_frames:
        raise RuntimeError(f"section loop made {frames.shape[0]} frames, expected {expected_frames}")
    if source is not None and continues is not None:
        made = frames.shape[0]
        frames = join_output(source, frames, continues.context, VAE_TEMPORAL, params.extension_output)
        info_extra["extension"] = {
            "input_frames": int(source.frames.shape[0]), "new_frames": made - redecoded_frames(
                continues.context, VAE_TEMPORAL), "output": params.extension_output,
            "input_size": f"{source.source_width}x{source.source_height}",
            "history_latents": int(continues.history.shape[2])}

    # 5) Write the MP4 (params in its metadata) and a thumbnail from the middle of the video.
    write_started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    video_path = out_dir / "video.mp4"
    thumb_path = out_dir / "thumbnail.jpg"
    write_mp4(frames, video_path, fps=FPS, crf=params.mp4_crf,
              metadata=params_metadata(params, seed, model.preset))
    write_thumbnail(frames[frames.shape[0] // 2], thumb_path)
    write_seconds = time.perf_counter() - write_started

    t = timer.totals
    timings = {
        "encode": round(t.get("encode", 0.0), 4),
        "sample": round(t.get("sample", 0.0), 4),
        "decode": round(t.get("decode", 0.0), 4),
        # Scheduler steps, offload transfers, pre/post-processing: the loop minus the timed modules.
        "other": round(max(0.0, call_seconds - sum(t.values())), 4),
        "write": round(write_seconds, 4),
        # Inside "other": making latent previews and partial videos (not the callbacks' own time).
        "previews": round(live_seconds["previews"], 4),
        "partials": round(partial.seconds if partial is not None else 0.0, 4),
        "total": round(time.perf_counter() - started, 4),
    }
    info: dict[str, Any] = {
        "frames": int(frames.shape[0]),
        "fps": FPS,
        "width": width,
        "height": height,
        "sections": sections,
        "steps": steps,
        "sampling_mode": params.sampling_mode,
        "model": model.preset,
        "timings": timings,
        "cache": cache,
        "memory": memory_info,
        **info_extra,
    }
    schedule = params.prompt_schedule()
    if schedule is not None:
        info["prompt_schedule"] = schedule
    if params.keyframe_times:
        info["keyframes"] = params.keyframes()
    log.info("video: %dx%d, %d frames, %d sections, %.2fs total", width, height,
             frames.shape[0], sections, timings["total"])
    return JobOutput(files={"video": video_path, "thumbnail": thumb_path}, seed=seed, info=info)
