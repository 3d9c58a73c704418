"""Latent previews and partial videos from generate_video, on the real tiny pipeline."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from framepack_api.backends.base import JobOutput, Progress, RunContext
from framepack_api.backends.framepack.loader import LoadedModel
from framepack_api.backends.framepack.video import generate_video
from framepack_api.errors import JobCancelled
from framepack_api.media.images import find_nearest_bucket
from framepack_api.media.preview import (
    HUNYUAN_LATENT_RGB,
    HUNYUAN_LATENT_RGB_BIAS,
    latent_frame_to_rgb,
    preview_image,
    preview_size,
)
from framepack_api.media.video import read_frames, read_mp4_info
from framepack_api.params import VideoParams, frame_count, total_sections

# window 1 keeps sections cheap, so several sections fit in well under a second.
FAST: dict[str, Any] = {"resolution": 64, "steps": 3, "latent_window_size": 1, "video_length": 0.4,
                        "seed": 11, "use_teacache": False}


def run(model: LoadedModel, workdir: Path, image: Image.Image, ctx: RunContext | None = None,
        end: Image.Image | None = None, preview_every: int = 1, partial_videos: bool = True,
        **overrides: Any) -> JobOutput:
    params = VideoParams(**{**FAST, **overrides})
    return generate_video(model, params, image, end, workdir, ctx or RunContext(workdir=workdir),
                          preview_every=preview_every, partial_videos=partial_videos)


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Path, np.ndarray]]:
    """Every (path, frames) handed to write_mp4 by generate_video and the partial writer, in order."""
    from framepack_api.backends.framepack import progress_hooks, video

    calls: list[tuple[Path, np.ndarray]] = []
    real = video.write_mp4

    def spy(frames: Any, path: Path, **kwargs: Any) -> None:
        calls.append((path, np.array(frames, copy=True)))
        real(frames, path, **kwargs)

    monkeypatch.setattr(video, "write_mp4", spy)
    monkeypatch.setattr(progress_hooks, "write_mp4", spy)
    return calls


def assert_unhooked(model: LoadedModel) -> None:
    # The wrapper is an instance attribute; the class's method must be what callers see again.
    assert "decode" not in vars(model.pipe.vae)


def no_temp_files(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


# --- latent → RGB -------------------------------------------------------------------------------

def test_hunyuan_projection_matches_the_published_factors() -> None:
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(16, 2, 3)).astype(np.float32)
    weight = np.array(HUNYUAN_LATENT_RGB, dtype=np.float64)
    bias = np.array(HUNYUAN_LATENT_RGB_BIAS, dtype=np.float64)
    expected = np.einsum("chw,cr->hwr", latent.astype(np.float64), weight) + bias
    expected8 = np.round(np.clip(expected, 0, 1) * 255).astype(np.uint8)
    got = latent_frame_to_rgb(torch.from_numpy(latent))
    assert got.shape == (2, 3, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - expected8.astype(int)).max() <= 1  # float32 vs float64 rounding
    # Zero latents decode to the bias colour alone.
    zero = latent_frame_to_rgb(torch.zeros(16, 1, 1))[0, 0]
    assert tuple(zero) == tuple(round(max(0.0, b) * 255) for b in HUNYUAN_LATENT_RGB_BIAS)


def test_fallback_stretches_the_first_three_channels() -> None:
    latent = torch.zeros(4, 2, 2)
    latent[0] = torch.tensor([[-3.0, 0.0], [1.0, 5.0]])  # stretched to 0..255
    latent[1] = 7.0  # flat: black, not a division by zero
    latent[2] = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    latent[3] = 100.0  # a fourth channel is ignored
    rgb = latent_frame_to_rgb(latent)
    assert rgb[..., 0].tolist() == [[0, 96], [128, 255]]
    assert rgb[..., 1].tolist() == [[0, 0], [0, 0]]
    assert rgb[..., 2].tolist() == [[0, 255], [0, 255]]
    # Fewer than three channels repeat: one channel gives grey.
    grey = latent_frame_to_rgb(latent[:1])
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()


@pytest.mark.parametrize(("latent_w", "latent_h", "expected"), [
    (8, 6, (64, 48)),  # tiny: full ×8
    (104, 60, (416, 240)),  # 832×480 video: ×4 fits 512
    (100, 50, (500, 250)),  # ×5
    (512, 10, (512, 10)),  # exactly fits: ×1
    (1024, 100, (512, 50)),  # too wide: shrunk
])
def test_preview_size_is_bounded(latent_w: int, latent_h: int, expected: tuple[int, int]) -> None:
    size = preview_size(latent_w, latent_h)
    assert size == expected
    assert size[0] <= 512 and size[0] <= 8 * latent_w


def test_preview_image_shows_the_middle_frame() -> None:
    latents = torch.zeros(1, 4, 3, 2, 2)
    latents[0, 0, 1] = torch.tensor([[0.0, 1.0], [0.0, 1.0]])  # only the middle frame has a pattern
    img = preview_image(latents, max_scale=1)
    assert img.size == (2, 2)
    assert np.asarray(img)[:, :, 0].tolist() == [[0, 255], [0, 255]]
    with pytest.raises(ValueError):
        preview_image(latents[0])


# --- previews from a run ------------------------------------------------------------------------

@pytest.mark.parametrize("every", [1, 2, 4, 0])
def test_previews_every_n_steps(tiny_model: LoadedModel, tmp_path: Path, start_image: Image.Image,
                                every: int) -> None:
    sections = total_sections(FAST["video_length"], FAST["latent_window_size"])
    assert sections == 3
    jpegs: list[tuple[Path, bytes]] = []
    progress: list[Progress] = []

    def on_preview(path: Path) -> None:
        jpegs.append((path, path.read_bytes()))  # read now: the next preview replaces the file
        assert progress, "progress is reported before the step's preview"

    ctx = RunContext(workdir=tmp_path, preview=on_preview, progress=progress.append)
    out = run(tiny_model, tmp_path, start_image, ctx, preview_every=every)
    total_steps = sections * FAST["steps"]
    assert len(progress) == total_steps
    assert len(jpegs) == (total_steps // every if every else 0)
    height, width = find_nearest_bucket(start_image.height, start_image.width, 64)
    scale = tiny_model.pipe.vae_scale_factor_spatial
    expected = preview_size(width // scale, height // scale)
    assert expected[0] <= min(512, width)  # never larger than ×8 of the latent
    for path, data in jpegs:
        assert path == tmp_path / "preview.jpg"
        with Image.open(io.BytesIO(data)) as img:
            assert img.format == "JPEG" and img.mode == "RGB"
            assert img.size == expected
    assert no_temp_files(tmp_path)
    assert out.info["timings"]["previews"] >= 0.0


# --- partial videos -----------------------------------------------------------------------------

def expected_partial_frames(mode: str, sections: int, window: int) -> list[int]:
    """Frames of the video after each section, from the pipeline's section layout.

    forward: the first section decodes the start image + window latents (4w+1 frames), each later
    one adds 4w. reverse: the first decode has window latents (4w-3 frames), each later one adds 4w,
    and the last also adds the start image's latent (4 more).
    """
    if mode == "forward":
        return [frame_count(k, window) for k in range(1, sections + 1)]
    counts = [4 * window - 3 + 4 * window * k for k in range(sections - 1)]
    return [*counts, frame_count(sections, window)]


@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize(("window", "seconds"), [(1, 0.4), (2, 0.55)])
def test_partial_video_after_each_section(tiny_model: LoadedModel, tmp_path: Path,
                                          start_image: Image.Image, mode: str, window: int,
                                          seconds: float, written: list[tuple[Path, np.ndarray]]) -> None:
    sections = total_sections(seconds, window)
    assert sections >= 2
    seen: list[dict[str, Any]] = []
    last_frames: list[np.ndarray] = []

    def on_partial(path: Path) -> None:
        assert path == tmp_path / "partial.mp4"
        seen.append(read_mp4_info(path))
        last_frames[:] = [read_frames(path)]

    ctx = RunContext(workdir=tmp_path, partial_video=on_partial)
    out = run(tiny_model, tmp_path, start_image, ctx, preview_every=0, sampling_mode=mode,
              latent_window_size=window, video_length=seconds)
    counts = [info["frames"] for info in seen]
    assert counts == expected_partial_frames(mode, sections, window)
    assert counts[-1] == out.info["frames"] == frame_count(sections, window)
    assert all(info["fps"] == 30.0 for info in seen)
    assert all((info["width"], info["height"]) == (out.info["width"], out.info["height"]) for info in seen)
    # The last partial is the finished video, frame for frame (same frames, same encoder settings).
    # The last partial is the finished video, frame for frame. Compared before encoding: x264 on a
    # loaded machine does not always encode identical frames to identical bytes.
    assert np.array_equal(written[-2][1], written[-1][1])
    assert [p.name for p, _ in written] == ["partial.mp4"] * sections + ["video.mp4"]
    assert last_frames[0].shape == read_frames(out.files["video"]).shape
    assert no_temp_files(tmp_path)
    assert_unhooked(tiny_model)


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_final_video_is_the_same_with_and_without_live_output(
        tiny_model: LoadedModel, tmp_path: Path, start_image: Image.Image, end_image: Image.Image,
        mode: str, written: list[tuple[Path, np.ndarray]]) -> None:
    end = end_image if mode == "reverse" else None
    live = run(tiny_model, tmp_path / "live", start_image, end=end, sampling_mode=mode,
               preview_every=1, partial_videos=True)
    quiet = run(tiny_model, tmp_path / "quiet", start_image, end=end, sampling_mode=mode,
                preview_every=0, partial_videos=False)
    assert (tmp_path / "live" / "partial.mp4").is_file() and (tmp_path / "live" / "preview.jpg").is_file()
    assert not (tmp_path / "quiet" / "partial.mp4").exists()
    assert not (tmp_path / "quiet" / "preview.jpg").exists()
    assert live.seed == quiet.seed and live.info["frames"] == quiet.info["frames"]
    finals = [frames for path, frames in written if path.name == "video.mp4"]
    assert len(finals) == 2 and np.array_equal(finals[0], finals[1])


# --- failures inside callbacks ------------------------------------------------------------------

def test_raising_callbacks_stop_the_run_and_remove_hooks(tiny_model: LoadedModel, tmp_path: Path,
                                                        start_image: Image.Image,
                                                        written: list[tuple[Path, np.ndarray]]) -> None:
    reference = run(tiny_model, tmp_path / "ref", start_image)

    progress: list[Progress] = []

    def cancel_second_preview(path: Path) -> None:
        if len(progress) >= 2:
            raise JobCancelled()

    ctx = RunContext(workdir=tmp_path / "a", preview=cancel_second_preview, progress=progress.append)
    with pytest.raises(JobCancelled):
        run(tiny_model, tmp_path / "a", start_image, ctx)
    assert len(progress) == 2  # no step ran after the raise
    assert_unhooked(tiny_model)

    partials: list[Path] = []

    def cancel_on_first_partial(path: Path) -> None:
        partials.append(path)
        raise JobCancelled()

    progress.clear()
    ctx = RunContext(workdir=tmp_path / "b", partial_video=cancel_on_first_partial, progress=progress.append)
    with pytest.raises(JobCancelled):
        run(tiny_model, tmp_path / "b", start_image, ctx)
    assert len(partials) == 1
    assert len(progress) == FAST["steps"]  # stopped after the first section
    assert_unhooked(tiny_model)

    # The model is clean: a run afterwards behaves exactly like the reference run.
    counts: list[int] = []
    again = run(tiny_model, tmp_path / "c", start_image,
                RunContext(workdir=tmp_path / "c",
                           partial_video=lambda p: counts.append(read_mp4_info(p)["frames"])))
    assert counts == expected_partial_frames("reverse", 3, 1)
    finals = [frames for path, frames in written if path.name == "video.mp4"]
    assert len(finals) == 2 and np.array_equal(finals[0], finals[1])
    assert again.info["frames"] == reference.info["frames"]


def test_negative_preview_interval_is_rejected(tiny_model: LoadedModel, tmp_path: Path,
                                               start_image: Image.Image) -> None:
    with pytest.raises(ValueError, match="preview_every"):
        run(tiny_model, tmp_path, start_image, preview_every=-1)
