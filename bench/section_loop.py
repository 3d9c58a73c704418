"""What owning the section loop costs: ``run_sections`` against ``HunyuanVideoFramepackPipeline.__call__``.
Figures, never pass/fail.

The same tiny-model video (same seed, image, prompt, size, sections and steps, no live output) is
made N times each way, interleaved (pipeline, loop, pipeline, loop, …) so that drift and other load
hit both alike, for reverse and forward sampling. Printed: median and minimum seconds per video and
the loop's ratio to the pipeline call (below 1 = the loop is faster), and the largest difference of
the two videos' frames in uint8 levels (0 or 1: the same video).

    .venv/bin/python bench/section_loop.py            # 7 repeats per mode
    .venv/bin/python bench/section_loop.py --quick    # 3 repeats
    .venv/bin/python bench/section_loop.py --json     # also print the figures as JSON
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `framepack_api` importable from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import numpy as np
import torch
from PIL import Image

from framepack_api.backends.framepack.loader import LoadedModel, load_model
from framepack_api.backends.framepack.section_loop import SectionJob, run_sections
from framepack_api.backends.framepack.video import pipeline_num_frames, to_uint8
from framepack_api.settings import Settings

# Three sections of four steps at 128×128: about a second per video on an idle core.
SIZE, WINDOW, SECTIONS, STEPS, SEED = 128, 3, 3, 4, 31337
PROMPT = "a cat walks through a garden"


def start_image() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray((rng.random((SIZE, SIZE, 3)) * 255).astype(np.uint8))


def by_pipeline(model: LoadedModel, image: Image.Image, reverse: bool) -> np.ndarray:
    out = model.pipe(image=image, prompt=PROMPT, height=SIZE, width=SIZE,
                     num_frames=pipeline_num_frames(SECTIONS, WINDOW), latent_window_size=WINDOW,
                     num_inference_steps=STEPS, guidance_scale=10.0, output_type="np",
                     generator=torch.Generator().manual_seed(SEED),
                     sampling_type="inverted_anti_drifting" if reverse else "vanilla")
    return to_uint8(np.asarray(out.frames[0]))


def by_loop(model: LoadedModel, image: Image.Image, reverse: bool) -> np.ndarray:
    job = SectionJob(start=image, end=None, section_prompts=[PROMPT] * SECTIONS, negative_prompt=None,
                     height=SIZE, width=SIZE, window=WINDOW, steps=STEPS, true_cfg=1.0, guidance=10.0,
                     reverse=reverse)
    return run_sections(model.pipe, job, torch.Generator().manual_seed(SEED), lambda *_: None)


def timed(run: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    frames = run()
    return time.perf_counter() - started, frames


def measure(model: LoadedModel, repeats: int, reverse: bool) -> dict[str, Any]:
    image = start_image()
    by_loop(model, image, reverse)  # warm-up: first-call allocations are nobody's cost
    samples: dict[str, list[float]] = {"pipeline": [], "loop": []}
    largest_difference = 0
    for _ in range(repeats):
        pipe_s, pipe_frames = timed(lambda: by_pipeline(model, image, reverse))
        loop_s, loop_frames = timed(lambda: by_loop(model, image, reverse))
        samples["pipeline"].append(pipe_s)
        samples["loop"].append(loop_s)
        diff = np.abs(pipe_frames.astype(np.int16) - loop_frames.astype(np.int16))
        largest_difference = max(largest_difference, int(diff.max()))
    medians = {name: statistics.median(s) for name, s in samples.items()}
    minimums = {name: min(s) for name, s in samples.items()}
    return {"median_s": medians, "min_s": minimums, "max_frame_difference": largest_difference,
            "ratio_median": medians["loop"] / medians["pipeline"],
            "ratio_min": minimums["loop"] / minimums["pipeline"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=None, help="videos per way and mode (default 7, quick 3)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 7)
    logging.disable(logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="bench-section-loop-") as tmp:
        settings = Settings(model="tiny", data_dir=Path(tmp), device="cpu", _env_file=None)  # type: ignore[call-arg]
        model = load_model(settings)
        results = {mode: measure(model, repeats, mode == "reverse") for mode in ("reverse", "forward")}

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# section loop vs pipeline call — {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {load:.1f}")
    print(f"tiny model {SIZE}×{SIZE}, {SECTIONS} sections × {STEPS} steps, window {WINDOW}, "
          f"{repeats} repeats each, interleaved (s per video)")
    for mode, r in results.items():
        print(f"  {mode:8s} pipeline median {r['median_s']['pipeline']:.3f} min {r['min_s']['pipeline']:.3f}   "
              f"loop median {r['median_s']['loop']:.3f} min {r['min_s']['loop']:.3f}   "
              f"loop/pipeline ×{r['ratio_median']:.3f} (median) ×{r['ratio_min']:.3f} (min)   "
              f"frames differ by ≤ {r['max_frame_difference']} levels")
    if args.json:
        print(json.dumps({"repeats": repeats, "results": results}, indent=2))


if __name__ == "__main__":
    main()
