"""FramePack at full size on a GPU, per memory mode: figures, never pass/fail.

Builds the real-size FramePack transformer (diffusers' HunyuanVideoFramepackTransformer3DModel
defaults + FramePack's SigLIP image projection and clean-latent embedders, bf16) and the
HunyuanVideo VAE (fp16) with random weights — nothing is downloaded — around encoders of the real
text and image encoders (fp16), also full size with random weights; only the tokenizers are the
tiny model's. Then, for each memory
mode (gpu, offload, group, leaf), each VRAM cap (the whole card, then 24, 16, 12, 8, 6 GB via
``torch.cuda.set_per_process_memory_fraction``) and with and without the first-block cache
(``use_teacache``), it runs the service's own ``generate_video`` on a 640-bucket start image with
latent window 9 and prints seconds per sampling step, seconds per output frame, the VAE decode time
and the peak VRAM, or OOM.

    .venv/bin/python bench/gpu.py                       # GPU: every mode × cap × cache
    .venv/bin/python bench/gpu.py --modes group --caps 8,6 --steps 4
    .venv/bin/python bench/gpu.py --tiny                # the same code on the CPU, tiny model, seconds

With ``--tiny`` the tiny model runs on the CPU: ``gpu`` means everything in place, ``group`` and
``leaf`` run diffusers' real offloading hooks with the CPU as onload device, ``offload`` needs CUDA
and is reported as skipped, and there is no VRAM to cap or measure.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `framepack_api` importable from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import numpy as np
import torch
from PIL import Image

from framepack_api.backends.base import RunContext
from framepack_api.backends.framepack import fullsize, memory
from framepack_api.backends.framepack.loader import LoadedModel
from framepack_api.backends.framepack.memory import Placement
from framepack_api.backends.framepack.tiny import build_tiny_pipeline
from framepack_api.backends.framepack.video import generate_video
from framepack_api.params import VideoParams, frame_count, total_sections

MODES: tuple[Placement, ...] = ("gpu", "offload", "group", "leaf")
CAPS_GB = (0, 24, 16, 12, 8, 6)  # 0 = the whole card
GB = 1024**3  # a "24 GB" card has 24 GiB (cards' memory sizes are binary)
# What the CUDA context and its kernels take on a card outside PyTorch's allocator (about 0.5 GB is
# typical); the memory fraction only caps the allocator, so a capped run leaves this out.
CUDA_CONTEXT_BYTES = 600 * 1024**2
COLUMNS = ("mode", "cache", "cap_gb", "status", "s_per_step", "s_per_frame", "decode_s", "peak_gib", "resident")


def full_size_pipeline(device: torch.device) -> Any:
    """Every component at the real model's size and loading dtype, random weights, around the tiny
    pipeline's tokenizers and scheduler (token ids from the small vocabularies are valid ids of the
    full-size embeddings).

    Built on the GPU when it has room (random init of 22 B parameters takes minutes on a CPU), then
    moved to the CPU, from where every memory mode places it, as loading does.
    """
    from transformers import SiglipImageProcessor

    pipe: Any = build_tiny_pipeline()
    total = torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else 0
    build_on = device if total > 60 * 1024**3 else torch.device("cpu")
    default_dtype = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.bfloat16)  # no fp32 copy of 22 B parameters, on either device
        with torch.device(build_on):
            transformer = fullsize.transformer().to("cpu")
            vae = fullsize.vae().to("cpu", torch.float16)
            encoders = {name: module.half().to("cpu") for name, module in fullsize.encoders().items()}
    finally:
        torch.set_default_dtype(default_dtype)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    pipe.register_modules(
        transformer=transformer, vae=vae, **encoders,
        feature_extractor=SiglipImageProcessor(size={"height": 384, "width": 384}, image_mean=[0.5] * 3,
                                               image_std=[0.5] * 3))
    return pipe


def unplace(pipe: Any) -> None:
    """Back to plain CPU weights with no hooks, so the next mode starts from what loading gives."""
    pipe.remove_all_hooks()
    for module in memory.torch_modules(pipe).values():
        if memory.is_group_offloaded(module):
            memory.remove_group_offload(module)
        module.to("cpu")
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def cap_vram(device: torch.device, cap_gb: int) -> None:
    """Let PyTorch allocate what a ``cap_gb`` card would leave it after the CUDA context."""
    if device.type != "cuda":
        return
    total = torch.cuda.get_device_properties(device).total_memory
    fraction = 1.0 if cap_gb == 0 else min(1.0, (cap_gb * GB - CUDA_CONTEXT_BYTES) / total)
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)


def run_one(model: LoadedModel, params: VideoParams, image: Image.Image, workdir: Path) -> dict[str, Any]:
    """One job; seconds per step from the transformer's own time, per frame from the whole call."""
    out = generate_video(model, params, image, None, workdir, RunContext(workdir=workdir),
                         preview_every=0, partial_videos=False)
    t = out.info["timings"]
    steps = out.info["steps"] * out.info["sections"]
    call = t["total"] - t["write"]
    return {"s_per_step": t["sample"] / steps, "s_per_frame": call / out.info["frames"], "decode_s": t["decode"],
            "frames": out.info["frames"], "cache_kind": out.info["cache"]}


def bench(pipe: Any, device: torch.device, tiny: bool, modes: list[Placement], caps: list[int],
          params: dict[str, Any], preserve_gb: float) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    rng = np.random.default_rng(0)
    image = Image.fromarray((rng.random((480, 640, 3)) * 255).astype(np.uint8))
    dtype = torch.float32 if tiny else torch.bfloat16
    for mode in modes:
        for cap in caps:
            base: dict[str, Any] = {"mode": mode, "cap_gb": cap, "resident": "-"}
            if mode == "offload" and device.type != "cuda":
                rows += emit([{**base, "cache": c, "status": "skip:needs-CUDA"} for c in ("off", "on")])
                continue
            unplace(pipe)
            cap_vram(device, cap)
            placement: Placement = "cpu" if device.type == "cpu" and mode == "gpu" else mode
            try:
                memory.place_pipeline(pipe, placement, device, preserve_gb)
                model = LoadedModel(pipe=pipe, preset="tiny" if tiny else "framepack", is_tiny=tiny,
                                    device=device, default_resolution=params["resolution"], dtype=dtype,
                                    placement=placement)
                layout = model.prepare_memory(preserve_gb)
                if "resident_blocks" in layout:
                    resident = layout["resident_blocks"]
                    base["resident"] = f"{resident}/{resident + layout['offloaded_blocks']}"
            except torch.cuda.OutOfMemoryError:
                rows += emit([{**base, "cache": c, "status": "OOM:load"} for c in ("off", "on")])
                continue
            for cache in (False, True):
                row: dict[str, Any] = {**base, "cache": "on" if cache else "off"}
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                with tempfile.TemporaryDirectory() as tmp:
                    started = time.perf_counter()
                    try:
                        row.update(run_one(model, VideoParams(**params, use_teacache=cache), image, Path(tmp)))
                        row["status"] = "ok"
                    except torch.cuda.OutOfMemoryError:
                        row["status"] = "OOM"
                    row["wall_s"] = time.perf_counter() - started
                if device.type == "cuda":
                    row["peak_gib"] = torch.cuda.max_memory_allocated(device) / 1024**3
                rows += emit([row])
    unplace(pipe)
    return rows


def emit(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        print(format_row(row), flush=True)
    return rows


def format_row(row: dict[str, Any]) -> str:
    cells = []
    for col in COLUMNS:
        value = row.get(col, "-")
        cells.append(f"{value:.4f}" if isinstance(value, float) else str(value))
    return " ".join(f"{c:>16}" if i >= 3 else f"{c:>8}" for i, c in enumerate(cells))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="the tiny model on the CPU (seconds)")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--caps", default=None, help="GB, comma-separated; 0 = the whole card")
    ap.add_argument("--steps", type=int, default=None, help="sampling steps per section (25 GPU, 1 tiny)")
    ap.add_argument("--sections", type=int, default=1)
    ap.add_argument("--resolution", type=int, default=None, help="bucket (640 GPU, 64 tiny)")
    ap.add_argument("--preserve", type=float, default=memory.DEFAULT_PRESERVE_GB,
                    help="gpu_memory_preservation in GB (group mode's resident blocks)")
    ap.add_argument("--json", action="store_true", help="also print every row as JSON")
    args = ap.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    for m in modes:
        if m not in MODES:
            ap.error(f"--modes: unknown mode {m!r} (known: {', '.join(MODES)})")
    window = 9
    steps = args.steps or (1 if args.tiny else 25)
    resolution = args.resolution or (64 if args.tiny else 640)
    # Seconds that make exactly `sections` sections (FramePack's rounding, 30 fps).
    seconds = args.sections * window * 4 / 30
    assert total_sections(seconds, window) == args.sections
    if args.tiny:
        device, caps = torch.device("cpu"), [0]
        pipe: Any = build_tiny_pipeline()
    else:
        if not torch.cuda.is_available():
            ap.error("no CUDA device: run with --tiny, or on a GPU machine")
        device = torch.device("cuda")
        caps = [int(c) for c in args.caps.split(",")] if args.caps else list(CAPS_GB)
        pipe = full_size_pipeline(device)
    pipe.set_progress_bar_config(disable=True)
    params = {"resolution": resolution, "steps": steps, "latent_window_size": window, "video_length": seconds,
              "seed": 31337}
    card = (f"{torch.cuda.get_device_name(device)}, {torch.cuda.get_device_properties(device).total_memory / GB:.0f} GB"
            if device.type == "cuda" else "no GPU (CPU)")
    import diffusers

    print("FramePack GPU benchmark (figures, not pass/fail)")
    print(f"  model: {'tiny (CPU)' if args.tiny else 'full-size FramePack transformer + VAE, random weights'}")
    print(f"  device: {card}; torch {torch.__version__}, diffusers {diffusers.__version__}, "
          f"python {platform.python_version()}")
    print(f"  job: bucket {resolution}, window {window}, {args.sections} section(s) = "
          f"{frame_count(args.sections, window)} frames, {steps} steps, preserve {args.preserve} GB")
    print(" ".join(f"{c:>16}" if i >= 3 else f"{c:>8}" for i, c in enumerate(COLUMNS)))
    rows = bench(pipe, device, args.tiny, modes, caps, params, args.preserve)  # type: ignore[arg-type]
    if args.json:
        for row in rows:
            print("JSON " + json.dumps(row, sort_keys=True))


if __name__ == "__main__":
    main()
