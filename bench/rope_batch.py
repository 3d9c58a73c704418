"""What the RoPE batch buys: N target indices in one batched pass against N single one-frame jobs.
Figures, never pass/fail.

Both ways run the real image job through ``FramepackBackend.run`` on the tiny model with the same
input image, prompt, seed, size and steps: once as one job with ``rope_batch`` (all N indices in one
pass, ``rope_batch_size`` = N) and N times as a job with ``target_index`` = each index. Rounds are
interleaved (batched, separate, batched, …) so that drift and other load hit both alike. Printed:
median and minimum seconds for all N images each way, the batched/separate ratio (below 1 = the batch
is faster), the largest pixel difference between the two ways' images (0 or 1: the same images) and
the load average before and after. A second line times the sampling alone (``sample_latents``: the
transformer passes and scheduler steps, text and image encoded once, no decoding or PNGs): the N
indices as one batch against N batches of one.

    .venv/bin/python bench/rope_batch.py                 # N=8 indices, 5 rounds
    .venv/bin/python bench/rope_batch.py --quick         # 3 rounds
    .venv/bin/python bench/rope_batch.py --indices 16 --size 128 --steps 4 --json
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
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `framepack_api` importable from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import numpy as np
import torch
from PIL import Image

from framepack_api.backends.base import RunContext
from framepack_api.backends.framepack.backend import FramepackBackend
from framepack_api.backends.framepack.oneframe import Layout, Sampling, encode_conditioning, sample_latents
from framepack_api.params import JobType
from framepack_api.settings import Settings

PROMPT, SEED = "a cat turns its head", 31337


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.int16)


class Runner:
    def __init__(self, backend: FramepackBackend, root: Path, size: int, steps: int) -> None:
        self.backend, self.root, self.runs = backend, root, 0
        self.base: dict[str, Any] = {"prompt": PROMPT, "seed": SEED, "width": size, "height": size, "steps": steps}
        rng = np.random.default_rng(0)
        self.input = root / "input.png"
        Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(self.input)

    def job(self, params: dict[str, Any]) -> dict[str, Path]:
        self.runs += 1
        workdir = self.root / f"run-{self.runs}"
        workdir.mkdir()
        out = self.backend.run(JobType.image, {**self.base, **params}, {"input_image": self.input},
                               RunContext(workdir=workdir))
        return out.files

    def batched(self, targets: list[int]) -> tuple[float, list[np.ndarray]]:
        started = time.perf_counter()
        files = self.job({"rope_batch": {"indices": targets}, "rope_batch_size": min(len(targets), 8)})
        seconds = time.perf_counter() - started
        return seconds, [pixels(files[f"image_{i:03d}"]) for i in range(len(targets))]

    def separate(self, targets: list[int]) -> tuple[float, list[np.ndarray]]:
        started = time.perf_counter()
        files = [self.job({"target_index": t})["image"] for t in targets]
        seconds = time.perf_counter() - started
        return seconds, [pixels(f) for f in files]


def sampling_seconds(runner: Runner, targets: list[int], batched: bool) -> float:
    """The denoising alone: all ``targets`` as one batch, or one batch of one per target."""
    model, base = runner.backend.model, runner.base
    with Image.open(runner.input) as img:
        cond = encode_conditioning(model, img.convert("RGB"))
    layout = Layout(target_index=targets[0], window=9)
    sampling = Sampling(steps=base["steps"], cfg=1.0, gs=10.0)
    groups = [targets] if batched else [[t] for t in targets]
    started = time.perf_counter()
    for group in groups:
        sample_latents(model, [PROMPT] * len(group), [SEED] * len(group), cond, layout, sampling,
                       lambda _step: None, group)
    return time.perf_counter() - started


def measure(runner: Runner, targets: list[int], rounds: int) -> dict[str, Any]:
    runner.batched(targets[:2])  # warm-up: first-call allocations are nobody's cost
    runner.separate(targets[:1])
    samples: dict[str, list[float]] = {"batched": [], "separate": [], "sampling_batched": [],
                                       "sampling_separate": []}
    largest_difference = 0
    for _ in range(rounds):
        batch_s, batch_images = runner.batched(targets)
        single_s, single_images = runner.separate(targets)
        samples["batched"].append(batch_s)
        samples["separate"].append(single_s)
        samples["sampling_batched"].append(sampling_seconds(runner, targets, batched=True))
        samples["sampling_separate"].append(sampling_seconds(runner, targets, batched=False))
        for a, b in zip(batch_images, single_images, strict=True):
            largest_difference = max(largest_difference, int(np.abs(a - b).max()))
    medians = {name: statistics.median(s) for name, s in samples.items()}
    minimums = {name: min(s) for name, s in samples.items()}
    return {"median_s": medians, "min_s": minimums, "max_pixel_difference": largest_difference,
            "ratio_median": medians["batched"] / medians["separate"],
            "ratio_min": minimums["batched"] / minimums["separate"],
            "sampling_ratio_median": medians["sampling_batched"] / medians["sampling_separate"],
            "sampling_ratio_min": minimums["sampling_batched"] / minimums["sampling_separate"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--indices", type=int, default=8, help="N: target indices 1..N (at most 8 per pass)")
    parser.add_argument("--size", type=int, default=128, help="width = height in pixels (multiple of 16)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=None, help="default 5, quick 3")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 5)
    targets = list(range(1, args.indices + 1))
    logging.disable(logging.WARNING)

    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="bench-rope-batch-") as tmp:
        root = Path(tmp)
        settings = Settings(model="tiny", data_dir=root / "data", device="cpu", _env_file=None)  # type: ignore[call-arg]
        runner = Runner(FramepackBackend(settings), root, args.size, args.steps)
        result = measure(runner, targets, rounds)
    load_after = load_average()

    print(f"# RoPE batch vs single one-frame jobs — {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {load_before:.1f} before, {load_after:.1f} after")
    print(f"tiny model {args.size}×{args.size}, {args.steps} steps, {len(targets)} target indices "
          f"({targets[0]}..{targets[-1]}), {rounds} rounds, interleaved (s for all {len(targets)} images)")
    print(f"  batched  median {result['median_s']['batched']:.3f} min {result['min_s']['batched']:.3f}   "
          f"separate median {result['median_s']['separate']:.3f} min {result['min_s']['separate']:.3f}   "
          f"batched/separate ×{result['ratio_median']:.3f} (median) ×{result['ratio_min']:.3f} (min)   "
          f"images differ by ≤ {result['max_pixel_difference']} levels")
    print(f"  sampling only: batched median {result['median_s']['sampling_batched']:.3f}   "
          f"separate median {result['median_s']['sampling_separate']:.3f}   "
          f"×{result['sampling_ratio_median']:.3f} (median) ×{result['sampling_ratio_min']:.3f} (min)")
    if args.json:
        print(json.dumps({"rounds": rounds, "targets": targets, "size": args.size, "steps": args.steps,
                          "load_before": load_before, "load_after": load_after, **result}, indent=2))


if __name__ == "__main__":
    main()
