"""generate_video and FramepackBackend on the real tiny HunyuanVideoFramepackPipeline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from framepack_api.backends.base import JobOutput, Progress, RunContext
from framepack_api.backends.framepack.backend import FramepackBackend
from framepack_api.backends.framepack.loader import LoadedModel
from framepack_api.backends.framepack.video import generate_video, pipeline_num_frames
from framepack_api.errors import JobCancelled
from framepack_api.media.images import find_nearest_bucket
from framepack_api.media.video import read_frames, read_mp4_info
from framepack_api.params import JobType, VideoParams, frame_count, total_sections
from framepack_api.settings import Settings

# Small enough to run in well under a second each on two CPU cores.
FAST: dict[str, Any] = {"resolution": 64, "steps": 2, "latent_window_size": 2, "video_length": 0.2,
                        "seed": 7, "use_teacache": False}



def same_video(a: np.ndarray, b: np.ndarray) -> bool:
    """Decoded frames of two encodes of the same pixels. x264 output was seen to differ by a few
    levels between runs on a loaded machine, so equal means within a small mean difference;
    videos from different seeds of the tiny model differ by tens of levels."""
    return a.shape == b.shape and float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()) < 1.5

def run(model: LoadedModel, out: Path, image: Image.Image, end: Image.Image | None = None,
        ctx: RunContext | None = None, **overrides: Any) -> JobOutput:
    params = VideoParams(**{**FAST, **overrides})
    return generate_video(model, params, image, end, out, ctx or RunContext(workdir=out))


@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize(("window", "seconds"), [(2, 0.2), (1, 0.27), (3, 0.8)])
def test_video_has_frame_count_and_bucket_size(tiny_model: LoadedModel, tmp_path: Path,
                                               start_image: Image.Image, mode: str, window: int,
                                               seconds: float) -> None:
    out = run(tiny_model, tmp_path, start_image, sampling_mode=mode, latent_window_size=window,
              video_length=seconds)
    sections = total_sections(seconds, window)
    expected = frame_count(sections, window)
    bh, bw = find_nearest_bucket(start_image.height, start_image.width, 64)
    info = read_mp4_info(out.files["video"])
    assert info["frames"] == expected == out.info["frames"]
    assert (info["height"], info["width"]) == (bh, bw) == (out.info["height"], out.info["width"])
    assert info["fps"] == 30.0
    assert out.info["sections"] == sections
    assert out.files["thumbnail"].is_file()
    with Image.open(out.files["thumbnail"]) as thumb:
        assert thumb.size == (bw, bh)  # small frames are never enlarged


def test_two_sections_are_sampled(tiny_model: LoadedModel, tmp_path: Path, start_image: Image.Image) -> None:
    assert total_sections(0.27, 1) == 2
    progress: list[Progress] = []
    out = run(tiny_model, tmp_path, start_image, latent_window_size=1, video_length=0.27, steps=3,
              ctx=RunContext(workdir=tmp_path, progress=progress.append))
    assert out.info["sections"] == 2
    assert [(p.section, p.step) for p in progress] == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)]
    assert all(p.total_sections == 2 and p.total_steps == 3 for p in progress)
    percents = [p.percent for p in progress]
    assert percents == sorted(percents) and percents[-1] == 100.0


def test_num_frames_mapping_gives_exact_sections() -> None:
    for window in (1, 2, 9, 33):
        for sections in (1, 2, 5):
            wf = (window - 1) * 4 + 1
            assert max(1, -(-pipeline_num_frames(sections, window) // wf)) == sections


def test_end_image_changes_reverse_output(tiny_model: LoadedModel, tmp_path: Path,
                                          start_image: Image.Image, end_image: Image.Image) -> None:
    plain = run(tiny_model, tmp_path / "a", start_image)
    ended = run(tiny_model, tmp_path / "b", start_image, end_image)
    assert not np.array_equal(read_frames(plain.files["video"]), read_frames(ended.files["video"]))


def test_forward_with_end_image_raises(tiny_model: LoadedModel, tmp_path: Path,
                                       start_image: Image.Image, end_image: Image.Image) -> None:
    with pytest.raises(ValueError, match="reverse"):
        run(tiny_model, tmp_path, start_image, end_image, sampling_mode="forward")
    assert not (tmp_path / "video.mp4").exists()


def test_same_seed_reproduces_and_other_seed_differs(tiny_model: LoadedModel, tmp_path: Path,
                                                     start_image: Image.Image) -> None:
    a = read_frames(run(tiny_model, tmp_path / "a", start_image, seed=123).files["video"])
    b = read_frames(run(tiny_model, tmp_path / "b", start_image, seed=123).files["video"])
    c = read_frames(run(tiny_model, tmp_path / "c", start_image, seed=124).files["video"])
    assert same_video(a, b)
    assert not same_video(a, c)


def test_random_seed_is_recorded_and_reproducible(tiny_model: LoadedModel, tmp_path: Path,
                                                  start_image: Image.Image) -> None:
    first = run(tiny_model, tmp_path / "a", start_image, seed=-1)
    assert 0 <= first.seed <= 2**32 - 1
    meta = json.loads(read_mp4_info(first.files["video"])["metadata"]["comment"])
    assert meta["seed"] == first.seed
    again = run(tiny_model, tmp_path / "b", start_image, seed=first.seed)
    assert again.seed == first.seed
    assert same_video(read_frames(first.files["video"]), read_frames(again.files["video"]))


def test_params_round_trip_through_metadata(tiny_model: LoadedModel, tmp_path: Path,
                                            start_image: Image.Image) -> None:
    out = run(tiny_model, tmp_path, start_image, prompt="a dancing cat", gs=8.5, mp4_crf=23)
    meta = json.loads(read_mp4_info(out.files["video"])["metadata"]["comment"])
    changed = {"prompt": "a dancing cat", "gs": 8.5, "mp4_crf": 23}
    expected = VideoParams(**{**FAST, **changed}).model_dump(mode="json")
    assert meta == {**expected, "model": "tiny"}


@pytest.mark.parametrize("cancel_at", [1, 3])
def test_cancel_at_step_raises_after_monotonic_progress(tiny_model: LoadedModel, tmp_path: Path,
                                                        start_image: Image.Image, cancel_at: int) -> None:
    progress: list[Progress] = []
    ctx = RunContext(workdir=tmp_path, progress=progress.append,
                     cancelled=lambda: len(progress) >= cancel_at)
    with pytest.raises(JobCancelled):
        run(tiny_model, tmp_path, start_image, steps=2, latent_window_size=1, video_length=0.27, ctx=ctx)
    assert len(progress) == cancel_at  # stopped at the step it was cancelled in, not later
    percents = [p.percent for p in progress]
    assert percents == sorted(percents) and len(set(percents)) == len(percents)
    assert not (tmp_path / "video.mp4").exists()


def test_cancelled_before_start(tiny_model: LoadedModel, tmp_path: Path, start_image: Image.Image) -> None:
    progress: list[Progress] = []
    ctx = RunContext(workdir=tmp_path, progress=progress.append, cancelled=lambda: True)
    with pytest.raises(JobCancelled):
        run(tiny_model, tmp_path, start_image, ctx=ctx)
    assert progress == []


def test_teacache_uses_first_block_cache_and_cleans_up(tiny_model: LoadedModel, tmp_path: Path,
                                                       start_image: Image.Image) -> None:
    out = run(tiny_model, tmp_path / "a", start_image, use_teacache=True)
    assert out.info["cache"] == "first_block_cache"
    assert not tiny_model.pipe.transformer.is_cache_enabled  # disabled again after the call
    off = run(tiny_model, tmp_path / "b", start_image, use_teacache=False)
    assert off.info["cache"] == "none"


def test_true_cfg_with_cache_and_rs_runs(tiny_model: LoadedModel, tmp_path: Path,
                                         start_image: Image.Image) -> None:
    out = run(tiny_model, tmp_path / "cfg", start_image, cfg=3.0, rs=0.4, use_teacache=True,
              negative_prompt="blurry")
    plain = run(tiny_model, tmp_path / "plain", start_image)
    assert out.info["cache"] == "first_block_cache"
    assert "ignored" not in out.info  # rs is applied now (tests/backends/test_guidance.py)
    assert not np.array_equal(read_frames(out.files["video"]), read_frames(plain.files["video"]))


def test_info_has_timings(tiny_model: LoadedModel, tmp_path: Path, start_image: Image.Image) -> None:
    out = run(tiny_model, tmp_path, start_image)
    timings = out.info["timings"]
    assert set(timings) >= {"encode", "sample", "decode", "write", "total"}
    assert timings["sample"] > 0 and timings["decode"] > 0 and timings["encode"] > 0
    assert timings["total"] >= timings["sample"] + timings["decode"]


def test_backend_runs_a_job_from_files(tiny_model: LoadedModel, tiny_settings: Settings, tmp_path: Path,
                                       start_image: Image.Image, end_image: Image.Image) -> None:
    backend = FramepackBackend(tiny_settings, model=tiny_model)
    assert backend.is_tiny and backend.preset == "tiny"
    rgba = start_image.convert("RGBA")
    rgba.save(tmp_path / "in.png")
    end_image.save(tmp_path / "end.jpg")
    work = tmp_path / "work"
    progress: list[Progress] = []
    inputs = {"image": tmp_path / "in.png", "end_image": tmp_path / "end.jpg"}
    out = backend.run(JobType.video, dict(FAST), inputs, RunContext(workdir=work, progress=progress.append))
    assert out.files["video"].parent == work
    assert read_mp4_info(out.files["video"])["frames"] == frame_count(1, 2)
    assert len(progress) == FAST["steps"]


def test_backend_validates_params(tiny_model: LoadedModel, tiny_settings: Settings, tmp_path: Path,
                                  start_image: Image.Image) -> None:
    backend = FramepackBackend(tiny_settings, model=tiny_model)
    start_image.save(tmp_path / "in.png")
    ctx = RunContext(workdir=tmp_path / "w")
    with pytest.raises(ValidationError):
        backend.run(JobType.video, {**FAST, "steps": 0}, {"image": tmp_path / "in.png"}, ctx)
    with pytest.raises(ValidationError):
        backend.run(JobType.video, {**FAST, "bogus": 1}, {"image": tmp_path / "in.png"}, ctx)
    with pytest.raises(ValueError, match="image"):
        backend.run(JobType.video, dict(FAST), {}, ctx)
