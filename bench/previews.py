"""What live output costs a video job: latent previews and partial videos. Figures, never pass/fail.

(a) The same tiny-model job (same seed, same inputs, model loaded once) with
      base       no previews, no partial videos;
      previews   a latent preview JPEG after every sampling step;
      partials   a partial MP4 after every section;
      both       the two together;
    N repeats, interleaved in a rotating order so drift hits every variant alike; medians (and
    minimums, less sensitive to other load on a shared machine) and each variant's ratio to base.
    On the tiny model a sampling step takes milliseconds, so these ratios are a worst case.
(b) The per-preview cost at the real model's size, directly: ``write_preview`` (latent → RGB →
    JPEG, atomic write) on a (1, 16, 9, 60, 104) latent, the shape of one 832×480 section with
    latent_window_size 9. On a GPU a real sampling step takes ~1 s, so this is the overhead per step.
(c) The partial-video cost at the real size: joining one decoded 480×832 section (33 frames, the
    decoder's bfloat16) and encoding the video so far, for each section of a 5-second video
    (4 sections, window 9). Skipped with --quick.

    .venv/bin/python bench/previews.py            # about a minute on 2 cores
    .venv/bin/python bench/previews.py --quick    # fewer repeats, no (c)
    .venv/bin/python bench/previews.py --json     # also print the figures as JSON
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
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
from framepack_api.backends.framepack.loader import LoadedModel, load_model
from framepack_api.backends.framepack.progress_hooks import SectionHistory
from framepack_api.backends.framepack.video import generate_video
from framepack_api.media.preview import write_preview
from framepack_api.media.video import write_mp4
from framepack_api.params import VideoParams
from framepack_api.settings import Settings

# Three sections of four steps at 128 px: long enough that one job is ~1 s on 2 cores.
JOB: dict[str, Any] = {"resolution": 128, "steps": 4, "latent_window_size": 3, "video_length": 1.2,
                       "seed": 31337, "use_teacache": False}
VARIANTS: dict[str, tuple[int, bool]] = {  # name → (preview_every, partial_videos)
    "base": (0, False),
    "previews": (1, False),
    "partials": (0, True),
    "both": (1, True),
}
REAL_LATENT = (1, 16, 9, 60, 104)


def start_image() -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray((rng.random((480, 832, 3)) * 255).astype(np.uint8))


def time_jobs(model: LoadedModel, repeats: int, workdir: Path) -> dict[str, list[float]]:
    image = start_image()
    params = VideoParams(**JOB)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    counts = {"previews": 0, "partials": 0}

    def count(kind: str) -> Any:
        def on(_path: Path) -> None:
            counts[kind] += 1
        return on

    generate_video(model, params, image, None, workdir / "warmup", RunContext(workdir=workdir / "warmup"))
    names = list(VARIANTS)
    for rep in range(repeats):
        # Rotate the order every repeat: no variant always runs first (or after the same neighbour).
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            every, partials = VARIANTS[name]
            out = workdir / name
            ctx = RunContext(workdir=out, preview=count("previews"), partial_video=count("partials"))
            started = time.perf_counter()
            generate_video(model, params, image, None, out, ctx, preview_every=every, partial_videos=partials)
            times[name].append(time.perf_counter() - started)
    sections = params.sections()
    assert counts["previews"] == 2 * repeats * sections * params.steps, counts
    assert counts["partials"] == 2 * repeats * sections, counts
    return times


def time_preview(workdir: Path, repeats: int) -> dict[str, float]:
    """Median ms of write_preview on a real-size latent, in float32 and in bfloat16."""
    figures: dict[str, float] = {}
    for dtype in (torch.float32, torch.bfloat16):
        latents = torch.randn(REAL_LATENT, generator=torch.Generator().manual_seed(0)).to(dtype)
        write_preview(latents, workdir / "preview.jpg")  # first call: allocations, JPEG tables
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            write_preview(latents, workdir / "preview.jpg")
            samples.append(time.perf_counter() - started)
        figures[str(dtype).removeprefix("torch.")] = statistics.median(samples) * 1000
    with Image.open(workdir / "preview.jpg") as img:
        figures["width"], figures["height"] = img.size
    return figures


def time_real_partials(model: LoadedModel, workdir: Path) -> list[dict[str, float]]:
    """Per section of a 5 s 832×480 reverse video (window 9): join ms, encode ms, frames."""
    window, sections = 9, 4
    history = SectionHistory(model.pipe, reverse=True, latent_window_size=window)
    rng = torch.Generator().manual_seed(0)
    rows = []
    for k in range(sections):
        last = k == sections - 1
        # The decoder's section sizes for reverse sampling: 4w-3 frames first, then 8w-3, last 8w+1.
        frames = 4 * window - 3 if k == 0 else (8 * window + 1 if last else 8 * window - 3)
        decoded = (torch.rand(1, 3, frames, 480, 832, generator=rng) * 2 - 1).to(torch.bfloat16)
        started = time.perf_counter()
        history.add(decoded)
        video = history.frames(4)
        joined = time.perf_counter()
        write_mp4(video, workdir / "partial.mp4", fps=30, crf=16)
        rows.append({"section": k + 1, "frames": int(video.shape[0]),
                     "join_ms": (joined - started) * 1000,
                     "encode_ms": (time.perf_counter() - joined) * 1000})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=None, help="job repeats per variant (default 7, quick 3)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 7)
    logging.disable(logging.WARNING)
    torch.manual_seed(0)

    with tempfile.TemporaryDirectory(prefix="bench-previews-") as tmp:
        workdir = Path(tmp)
        settings = Settings(model="tiny", data_dir=workdir / "data", device="cpu", _env_file=None)  # type: ignore[call-arg]
        model = load_model(settings)
        times = time_jobs(model, repeats, workdir)
        preview = time_preview(workdir, 20 if args.quick else 100)
        partials = [] if args.quick else time_real_partials(model, workdir)

    medians = {name: statistics.median(samples) for name, samples in times.items()}
    params = VideoParams(**JOB)
    per_job_steps = params.sections() * params.steps
    print(f"# previews benchmark — {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"(a) tiny job {JOB['resolution']}px, {params.sections()} sections × {params.steps} steps, "
          f"window {JOB['latent_window_size']}, {repeats} repeats (s, ratio to base)")
    minimums = {name: min(samples) for name, samples in times.items()}
    for name, median in medians.items():
        print(f"    {name:9s} median {median:7.3f} s ×{median / medians['base']:.3f}   "
              f"min {minimums[name]:7.3f} s ×{minimums[name] / minimums['base']:.3f}")
    extra_preview = (medians["previews"] - medians["base"]) / per_job_steps * 1000
    extra_partial = (medians["partials"] - medians["base"]) / params.sections() * 1000
    print(f"    ≈ {extra_preview:.2f} ms per preview, {extra_partial:.2f} ms per partial (tiny sizes)")
    print(f"(b) write_preview on a {REAL_LATENT} latent → {preview['width']:.0f}×{preview['height']:.0f} JPEG: "
          f"float32 {preview['float32']:.2f} ms, bfloat16 {preview['bfloat16']:.2f} ms (median, CPU)")
    if partials:
        print("(c) partial video at 832×480, 5 s reverse job (window 9), per section:")
        for row in partials:
            print(f"    section {row['section']:.0f}: {row['frames']:.0f} frames, join {row['join_ms']:.0f} ms, "
                  f"encode {row['encode_ms']:.0f} ms")
        total = sum(r["join_ms"] + r["encode_ms"] for r in partials) / 1000
        print(f"    all partials of the job: {total:.1f} s")
    if args.json:
        print(json.dumps({"job": JOB, "repeats": repeats, "median_s": medians, "preview_ms": preview,
                          "real_partials": partials}, indent=2))


if __name__ == "__main__":
    main()
