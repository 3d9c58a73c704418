"""Video extension on the tiny model: the input's encoded end is the history, the output keeps its order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from framepack_api.backends.base import RunContext
from framepack_api.backends.framepack.extension import load_input_video
from framepack_api.backends.framepack.loader import LoadedModel
from framepack_api.backends.framepack.video import generate_video
from framepack_api.media.images import find_nearest_bucket
from framepack_api.media.video import read_frames, write_mp4
from framepack_api.params import VideoParams

HEIGHT, WIDTH = 48, 64  # a bucket of resolution 64: the input is not resized
WINDOW = 2
INPUT_FRAMES = 23  # not 1 + 4k: the two frames in front of the encoded span are not encoded


def ramp_video(path: Path, frames: int = INPUT_FRAMES) -> np.ndarray:
    """Frame t is a gradient whose level rises by 9 per frame: any reordering or shift shows."""
    x = np.linspace(0, 40, WIDTH)[None, :, None]
    y = np.linspace(0, 20, HEIGHT)[:, None, None]
    video = np.stack([np.broadcast_to(20 + 9 * t + x + y, (HEIGHT, WIDTH, 3)) for t in range(frames)])
    write_mp4(video.round().astype(np.uint8), path, crf=0)
    return read_frames(path)  # what the job will read


def extension_params(output: str = "whole", **kw: Any) -> VideoParams:
    base: dict[str, Any] = {"prompt": "it goes on", "video_length": 0.3, "latent_window_size": WINDOW,
                            "steps": 1, "resolution": 64, "seed": 5, "use_teacache": False,
                            "has_input_video": True, "extension_output": output}
    return VideoParams(**{**base, **kw})


def run(model: LoadedModel, params: VideoParams, video: Path, out: Path) -> np.ndarray:
    output = generate_video(model, params, None, None, out, RunContext(workdir=out), preview_every=0,
                            partial_videos=False, input_video=video)
    return read_frames(output.files["video"])


def test_first_section_is_conditioned_on_the_inputs_encoded_end(tiny_model: LoadedModel, tmp_path: Path) -> None:
    pipe = tiny_model.pipe
    frames = ramp_video(tmp_path / "in.mp4")
    calls: list[dict[str, torch.Tensor]] = []

    def record(_m: torch.nn.Module, _args: Any, kwargs: dict[str, Any]) -> None:
        calls.append({k: v.detach().clone() for k, v in kwargs.items() if isinstance(v, torch.Tensor)})

    hook = pipe.transformer.register_forward_pre_hook(record, with_kwargs=True)
    try:
        run(tiny_model, extension_params(video_length=0.5), tmp_path / "in.mp4", tmp_path / "out")  # 2 sections
    finally:
        hook.remove()

    def encode(chunk: np.ndarray) -> torch.Tensor:  # the VAE's mean, independently of the module under test
        pixels = torch.from_numpy(chunk).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
        return pipe.vae.encode(pixels).latent_dist.mode() * pipe.vae.config.scaling_factor

    tail = encode(frames[-21:])  # 21 = 1 + 4·5 frames → 6 latents, ending at the last frame
    start = encode(frames[:1])
    first = calls[0]
    assert first["latents_clean"].shape[2] == 2
    torch.testing.assert_close(first["latents_clean"][:, :, :1].float(), start)
    torch.testing.assert_close(first["latents_clean"][:, :, 1:].float(), tail[:, :, -1:])
    torch.testing.assert_close(first["latents_history_2x"].float(), tail[:, :, -3:-1])
    history_4x = first["latents_history_4x"].float()
    torch.testing.assert_close(history_4x[:, :, -3:], tail[:, :, :3])
    assert not history_4x[:, :, :-3].any()  # nothing known before the encoded span
    # The second section's 1x latent is the first one made, no longer the input's.
    assert not torch.equal(calls[1]["latents_clean"][:, :, 1:].float(), tail[:, :, -1:])


def test_whole_output_is_the_input_then_the_new_frames(tiny_model: LoadedModel, tmp_path: Path) -> None:
    frames = ramp_video(tmp_path / "in.mp4")
    whole = run(tiny_model, extension_params("whole"), tmp_path / "in.mp4", tmp_path / "whole")
    new = run(tiny_model, extension_params("new"), tmp_path / "in.mp4", tmp_path / "new")
    sections = 1  # 0.3 s at window 2: round(9 / 8)
    added = 4 * sections * WINDOW
    assert new.shape == (added, HEIGHT, WIDTH, 3)
    assert whole.shape == (INPUT_FRAMES + added, HEIGHT, WIDTH, 3)
    # The input comes first and in order (levels differ by 9 per frame; x264 at crf 16 moves ~1).
    error = np.abs(whole[:INPUT_FRAMES].astype(int) - frames.astype(int)).mean(axis=(1, 2, 3))
    assert error.max() < 3, error
    # Same seed, same history: the new part is the whole video's end (the tiny model's output is
    # noise, which x264 keeps less exactly than the ramp; two unrelated noise videos differ by ~50).
    assert np.abs(whole[INPUT_FRAMES:].astype(int) - new.astype(int)).mean() < 8


def test_two_sections_and_a_long_input_keep_the_frame_count(tiny_model: LoadedModel, tmp_path: Path) -> None:
    # 85 frames = 1 + 4·21 latents: more than the 19 the history holds, so only the end is encoded.
    frames = ramp_video(tmp_path / "in.mp4", frames=26)
    long = np.concatenate([frames] * 3 + [frames[:7]])
    write_mp4(long, tmp_path / "long.mp4", crf=0)
    whole = run(tiny_model, extension_params("whole", video_length=0.5), tmp_path / "long.mp4", tmp_path / "o")
    assert whole.shape[0] == 85 + 4 * 2 * WINDOW


def test_extension_samples_forward() -> None:
    assert extension_params().sampling_mode == "forward"
    with pytest.raises(ValidationError) as caught:
        extension_params(sampling_mode="reverse")
    assert caught.value.errors()[0]["loc"] == ("sampling_mode",)
    assert VideoParams().sampling_mode == "reverse"  # without an input video, FramePack's default stays


def test_an_input_of_another_size_is_fitted_to_its_bucket(tmp_path: Path) -> None:
    video = np.stack([np.full((40, 72, 3), 10 * t, np.uint8) for t in range(7)])
    write_mp4(video, tmp_path / "odd.mp4", crf=0)
    loaded = load_input_video(tmp_path / "odd.mp4", 64)
    assert (loaded.height, loaded.width) == find_nearest_bucket(40, 72, 64) == (48, 80)
    assert loaded.frames.shape == (7, 48, 80, 3) and (loaded.source_width, loaded.source_height) == (72, 40)
    assert [round(f.mean() / 10) for f in loaded.frames] == list(range(7))  # every frame, in order
