"""FramePack's CFG re-scale (`rs`): the formula, and its effect in the section loop on the tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from framepack_api.backends.base import RunContext
from framepack_api.backends.framepack.guidance import guided
from framepack_api.backends.framepack.loader import LoadedModel
from framepack_api.backends.framepack.section_loop import SectionJob, run_sections
from framepack_api.backends.framepack.video import generate_video
from framepack_api.media.video import read_frames
from framepack_api.params import VideoParams


def test_rescale_moves_the_guided_std_to_the_conditional_one() -> None:
    gen = torch.Generator().manual_seed(0)
    cond, uncond = torch.randn(2, 4, 3, 8, 8, generator=gen), torch.randn(2, 4, 3, 8, 8, generator=gen) * 0.5
    plain = uncond + 4.0 * (cond - uncond)
    assert torch.equal(guided(cond, uncond, 4.0, 0.0), plain)
    full = guided(cond, uncond, 4.0, 1.0)
    dims = [1, 2, 3, 4]
    assert torch.allclose(full.std(dim=dims), cond.std(dim=dims), rtol=1e-5)  # per sample
    assert not torch.allclose(plain.std(dim=dims), cond.std(dim=dims), rtol=0.1)
    half = guided(cond, uncond, 4.0, 0.5)
    assert torch.allclose(half, (full + plain) / 2, atol=1e-5)


def loop(model: LoadedModel, start: Image.Image, cfg: float, rs: float) -> np.ndarray:
    job = SectionJob(start=start.resize((64, 48)), end=None, section_prompts=["a dog"] * 2,
                     negative_prompt="blurry", height=48, width=64, window=2, steps=2, true_cfg=cfg,
                     guidance=10.0, reverse=True, rescale=rs)
    return run_sections(model.pipe, job, torch.Generator().manual_seed(9), lambda *_: None)


def diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_rs_changes_the_frames_with_true_cfg(tiny_model: LoadedModel, start_image: Image.Image) -> None:
    # A strong cfg: the tiny model's conditional and unconditional predictions are close, so the
    # guided std inflates only a little at small scales.
    plain = loop(tiny_model, start_image, 10.0, 0.0)
    assert np.array_equal(loop(tiny_model, start_image, 10.0, 0.0), plain)  # deterministic
    full = diff(loop(tiny_model, start_image, 10.0, 1.0), plain)
    assert full > 2
    assert 0 < diff(loop(tiny_model, start_image, 10.0, 0.4), plain) < full  # rs mixes the two


def test_rs_does_nothing_without_true_cfg(tiny_model: LoadedModel, tmp_path: Path, start_image: Image.Image) -> None:
    # cfg = 1: the guided prediction is the conditional one, so the re-scale ratio is 1.
    assert diff(loop(tiny_model, start_image, 1.0, 0.7), loop(tiny_model, start_image, 1.0, 0.0)) < 0.01

    def video(rs: float) -> np.ndarray:
        params = VideoParams(prompt="a dog", video_length=0.3, latent_window_size=1, steps=2, resolution=64,
                             seed=2, use_teacache=False, rs=rs, mp4_crf=0)
        out = generate_video(tiny_model, params, start_image, None, tmp_path / str(rs),
                             RunContext(workdir=tmp_path), preview_every=0, partial_videos=False)
        assert "ignored" not in out.info
        return read_frames(out.files["video"])

    assert np.array_equal(video(0.9), video(0.0))
