"""One-frame inference, batches and kisekaeichi on the real tiny pipeline (through FramepackBackend.run)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from framepack_api.backends.base import JobOutput, Progress, RunContext
from framepack_api.backends.framepack.backend import FramepackBackend
from framepack_api.backends.framepack.loader import LoadedModel
from framepack_api.errors import JobCancelled
from framepack_api.media.png import read_png_parameters
from framepack_api.params import JobType
from framepack_api.settings import Settings

from .conftest import noise_image

SIZE: dict[str, Any] = {"steps": 2, "width": 64, "height": 64}
FAST: dict[str, Any] = {**SIZE, "seed": 5, "prompt": "a red coat"}


@pytest.fixture
def backend(tiny_settings: Settings, tiny_model: LoadedModel) -> FramepackBackend:
    return FramepackBackend(tiny_settings, model=tiny_model)


def run(backend: FramepackBackend, tmp_path: Path, job_type: JobType, params: dict[str, Any],
        inputs: dict[str, Image.Image] | None = None, **ctx_kwargs: Any) -> JobOutput:
    workdir = tmp_path / f"work-{len(list(tmp_path.iterdir()))}"
    workdir.mkdir()
    paths = {}
    for name, image in (inputs or {}).items():
        paths[name] = workdir / f"in-{name}.png"
        image.save(paths[name])
    return backend.run(job_type, params, paths, RunContext(workdir=workdir, **ctx_kwargs))


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.int16)


def test_image_size_matches_request_and_metadata_round_trips(backend: FramepackBackend, tmp_path: Path) -> None:
    out = run(backend, tmp_path, JobType.image, {**FAST, "width": 100, "height": 70, "prompt": "ねこ \"cat\""})
    with Image.open(out.files["image"]) as img:
        assert img.size == (96, 64)  # both round to the model's multiple of 16
        assert img.format == "PNG"
    meta = read_png_parameters(out.files["image"])
    assert meta["prompt"] == "ねこ \"cat\""
    assert meta["seed"] == 5 == out.seed
    assert meta["settings"]["width"] == 96 and meta["settings"]["height"] == 64
    assert meta["settings"]["steps"] == 2 and meta["settings"]["source"] == "neutral_canvas"
    assert meta["settings"]["target_index"] == 9  # default: the latent window size


def test_input_image_is_cropped_to_the_requested_size(backend: FramepackBackend, tmp_path: Path) -> None:
    out = run(backend, tmp_path, JobType.image, {**FAST, "width": 80, "height": 64, "has_input_image": True},
              {"input_image": noise_image(200, 90, seed=3)})
    with Image.open(out.files["image"]) as img:
        assert img.size == (80, 64)
    assert read_png_parameters(out.files["image"])["settings"]["source"] == "input_image"


def test_output_changes_with_target_index(backend: FramepackBackend, tmp_path: Path) -> None:
    image = {"input_image": noise_image(64, 64, seed=4)}
    near = run(backend, tmp_path, JobType.image, {**FAST, "target_index": 1, "has_input_image": True}, image)
    far = run(backend, tmp_path, JobType.image, {**FAST, "target_index": 9, "has_input_image": True}, image)
    again = run(backend, tmp_path, JobType.image, {**FAST, "target_index": 1, "has_input_image": True}, image)
    assert np.array_equal(pixels(near.files["image"]), pixels(again.files["image"]))  # deterministic
    assert np.abs(pixels(near.files["image"]) - pixels(far.files["image"])).max() > 0


def test_history_switches_change_the_output(backend: FramepackBackend, tmp_path: Path) -> None:
    full = run(backend, tmp_path, JobType.image, FAST)
    bare = run(backend, tmp_path, JobType.image, {**FAST, "no_2x": True, "no_4x": True, "no_post": True})
    assert np.abs(pixels(full.files["image"]) - pixels(bare.files["image"])).max() > 0


def transfer(backend: FramepackBackend, tmp_path: Path, source_seed: int, strength: float,
             **extra: Any) -> np.ndarray:
    images = {"target_image": noise_image(64, 64, seed=10), "source_image": noise_image(64, 64, seed=source_seed)}
    masks = extra.pop("masks", {})
    params = {**FAST, "transfer_strength": strength, **extra}
    out = run(backend, tmp_path, JobType.image_transfer, params, {**images, **masks})
    meta = read_png_parameters(out.files["image"])
    assert meta["settings"]["history_index"] == params.get("history_index", 16)
    assert meta["settings"]["target_index"] == 1  # kisekaeichi's default
    return pixels(out.files["image"])


def test_kisekaeichi_follows_the_reference(backend: FramepackBackend, tmp_path: Path) -> None:
    with_a = transfer(backend, tmp_path, source_seed=20, strength=1.0)
    with_b = transfer(backend, tmp_path, source_seed=21, strength=1.0)
    assert np.abs(with_a - with_b).max() > 0  # only the reference changed
    none_a = transfer(backend, tmp_path, source_seed=20, strength=0.0)
    none_b = transfer(backend, tmp_path, source_seed=21, strength=0.0)
    assert np.array_equal(none_a, none_b)  # strength 0 = no reference, whatever it is
    assert np.abs(with_a - none_a).max() > 0
    # A black source mask ignores the whole reference: the same as no reference.
    black = {"source_mask": Image.new("L", (64, 64), 0)}
    masked = transfer(backend, tmp_path, source_seed=20, strength=1.0, masks=black, has_source_mask=True)
    assert np.array_equal(masked, none_a)
    # A white target mask keeps everything: the same as no mask.
    white = {"target_mask": Image.new("L", (64, 64), 255)}
    assert np.array_equal(transfer(backend, tmp_path, 20, 1.0, masks=white, has_target_mask=True), with_a)


def test_transfer_size_defaults_to_the_target_bucket(backend: FramepackBackend, tmp_path: Path) -> None:
    images = {"target_image": noise_image(160, 90, seed=1), "source_image": noise_image(64, 64, seed=2)}
    out = run(backend, tmp_path, JobType.image_transfer, {"steps": 1, "seed": 1}, images)
    assert out.info["width"] > out.info["height"]  # the tiny model's 128 bucket nearest to 16:9
    with Image.open(out.files["image"]) as img:
        assert img.size == (out.info["width"], out.info["height"])


def test_batch_gives_one_png_per_prompt_with_distinct_recorded_seeds(backend: FramepackBackend,
                                                                     tmp_path: Path) -> None:
    seen: list[Progress] = []
    params = {**SIZE, "prompts": ["one", "two", "three"], "seeds": [7], "batch_size": 2}
    out = run(backend, tmp_path, JobType.image_batch, params, progress=seen.append)
    pngs = [out.files[f"image_{i:03d}"] for i in range(3)]
    seeds = [read_png_parameters(p)["seed"] for p in pngs]
    assert seeds[0] == 7 and len(set(seeds)) == 3 and out.info["seeds"] == seeds
    assert [read_png_parameters(p)["prompt"] for p in pngs] == ["one", "two", "three"]
    with zipfile.ZipFile(out.files["zip"]) as archive:
        assert sorted(archive.namelist()) == ["image_000.png", "image_001.png", "image_002.png"]
        with Image.open(io.BytesIO(archive.read("image_002.png"))) as img:
            assert img.size == (64, 64)
    # Two passes (2 + 1 images), two steps each, reported as sections.
    assert [(p.section, p.step, p.total_sections) for p in seen] == [(1, 1, 2), (1, 2, 2), (2, 1, 2), (2, 2, 2)]


def test_batched_passes_match_one_at_a_time(backend: FramepackBackend, tmp_path: Path) -> None:
    params = {**SIZE, "prompts": ["a cat", "a much longer prompt about a dog"], "seeds": [11, 12]}
    together = run(backend, tmp_path, JobType.image_batch, {**params, "batch_size": 2})
    alone = run(backend, tmp_path, JobType.image_batch, {**params, "batch_size": 1})
    for i in range(2):
        a, b = pixels(together.files[f"image_{i:03d}"]), pixels(alone.files[f"image_{i:03d}"])
        assert np.abs(a - b).max() <= 1  # float rounding only


def test_cancel_stops_an_image_job(backend: FramepackBackend, tmp_path: Path) -> None:
    calls = {"n": 0}

    def cancelled() -> bool:
        calls["n"] += 1
        return calls["n"] > 2

    with pytest.raises(JobCancelled):
        run(backend, tmp_path, JobType.image, {**FAST, "steps": 4}, cancelled=cancelled)


def test_batch_with_an_input_image_continues_it_for_every_prompt(backend: FramepackBackend, tmp_path: Path) -> None:
    """Seed 002's batch as FramePack-FastAPI runs it: one input_image for all prompts."""
    image = {"input_image": noise_image(90, 70, seed=30)}
    params = {**SIZE, "prompts": ["a cat", "a dog"], "seeds": [11, 12], "batch_size": 2}
    batch = run(backend, tmp_path, JobType.image_batch, {**params, "has_input_image": True}, image)
    canvas = run(backend, tmp_path, JobType.image_batch, params)
    for i, (prompt, seed) in enumerate([("a cat", 11), ("a dog", 12)]):
        png = batch.files[f"image_{i:03d}"]
        assert read_png_parameters(png)["settings"]["source"] == "input_image"
        # Each image is the single-image job with the same input, prompt and seed.
        single = run(backend, tmp_path, JobType.image, {**SIZE, "prompt": prompt, "seed": seed,
                                                         "has_input_image": True}, image)
        assert np.abs(pixels(png) - pixels(single.files["image"])).max() <= 1
        assert np.abs(pixels(png) - pixels(canvas.files[f"image_{i:03d}"])).max() > 1
    assert read_png_parameters(canvas.files["image_000"])["settings"]["source"] == "neutral_canvas"


def test_transfer_strength_default_is_seed_002s_and_one_is_the_unscaled_reference(backend: FramepackBackend,
                                                                                   tmp_path: Path) -> None:
    images = {"target_image": noise_image(64, 64, seed=10), "source_image": noise_image(64, 64, seed=20)}
    default = run(backend, tmp_path, JobType.image_transfer, FAST, images)
    assert default.info["transfer_strength"] == 0.7
    seventy = transfer(backend, tmp_path, source_seed=20, strength=0.7)
    assert np.array_equal(pixels(default.files["image"]), seventy)
    assert np.abs(seventy - transfer(backend, tmp_path, source_seed=20, strength=1.0)).max() > 0
