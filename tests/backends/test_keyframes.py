"""Keyframes in the section loop, on the real tiny pipeline: which section each one anchors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from framepack_api.backends.base import RunContext
from framepack_api.backends.framepack.loader import LoadedModel
from framepack_api.backends.framepack.section_loop import SectionJob, run_sections
from framepack_api.backends.framepack.video import generate_video
from framepack_api.params import VideoParams
from framepack_api.params.keyframes import keyframe_section


def test_a_keyframe_anchors_the_section_whose_end_is_nearest() -> None:
    # window 9: sections of 1.2 s; 5 s is 4 sections ending at 1.2, 2.4, 3.6, 4.8 s (3.0 s is a tie: later).
    assert [keyframe_section(t, 4, 9) for t in (0.1, 1.2, 1.7, 1.8, 2.0, 2.4, 3.0, 4.7, 5.0)] == [
        0, 0, 0, 1, 1, 1, 2, 3, 3]


@contextlib.contextmanager
def recording(pipe: Any) -> Iterator[dict[str, list[Any]]]:
    """Per transformer call its ``latents_clean`` and ``image_embeds``; per VAE encode its input pixels and
    the latent the loop draws from it (the sample times the scaling factor); every SigLIP embedding."""
    seen: dict[str, list[Any]] = {"clean": [], "embeds": [], "vae": [], "siglip": []}

    def record(_m: torch.nn.Module, _args: Any, kwargs: dict[str, Any]) -> None:
        seen["clean"].append(kwargs["latents_clean"].float().clone())
        seen["embeds"].append(kwargs["image_embeds"].clone())

    vae, real_encode, real_image = pipe.vae, pipe.vae.encode, pipe.encode_image

    def encode(pixels: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        out = real_encode(pixels, *args, **kwargs)
        dist, real_sample = out.latent_dist, out.latent_dist.sample

        def sample(*a: Any, **k: Any) -> torch.Tensor:
            drawn = real_sample(*a, **k)
            seen["vae"].append((pixels.float().mean(dim=(0, 2, 3, 4)), drawn.float() * vae.config.scaling_factor))
            return drawn

        dist.sample = sample
        return out

    def encode_image(*args: Any, **kwargs: Any) -> torch.Tensor:
        embeds = real_image(*args, **kwargs)
        seen["siglip"].append(embeds)
        return embeds

    hook = pipe.transformer.register_forward_pre_hook(record, with_kwargs=True)
    vae.encode, pipe.encode_image = encode, encode_image
    try:
        yield seen
    finally:
        hook.remove()
        del vae.encode, pipe.encode_image


def solid(colour: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", (96, 64), colour)


def latent_of(seen: dict[str, list[Any]], image: Image.Image) -> torch.Tensor:
    """The drawn latent whose input pixels have the solid image's colour (each test image has its own)."""
    colour = torch.tensor(image.getpixel((0, 0)), dtype=torch.float32) / 127.5 - 1  # type: ignore[arg-type]
    [latent] = [lat for m, lat in seen["vae"] if torch.allclose(m, colour, atol=1e-3)]
    return latent


@pytest.mark.parametrize("with_end", [True, False])
def test_each_keyframe_is_the_1x_clean_latent_of_its_section_and_nowhere_else(
        tiny_model: LoadedModel, tmp_path: Path, start_image: Image.Image, with_end: bool) -> None:
    # window 1: sections of 4 frames (0.1333 s); 0.8 s is 6 sections, made in the time order 5, 4, ..., 0.
    # 0.27 s is nearest the end of section 1 (0.267 s), 0.55 s that of section 3 (0.533 s).
    early, late, end = solid((200, 30, 30)), solid((30, 200, 30)), solid((30, 30, 200))
    params = VideoParams(prompt="a cat", video_length=0.8, latent_window_size=1, steps=2, resolution=64,
                         seed=4, use_teacache=False, keyframe_times=[0.55, 0.27], has_end_image=with_end)
    with recording(tiny_model.pipe) as seen:
        out = generate_video(tiny_model, params, start_image, end if with_end else None, tmp_path,
                             RunContext(workdir=tmp_path), preview_every=0, partial_videos=False,
                             keyframes=[late, early])
    anchors = {1: latent_of(seen, early), 3: latent_of(seen, late)}
    if with_end:
        anchors[5] = latent_of(seen, end)
    assert len(seen["clean"]) == 6 * 2  # two steps per section
    for call, clean in enumerate(seen["clean"]):
        section = 5 - call // 2  # in time order
        one_x = clean[:, :, 1:2]
        for anchored, latent in anchors.items():
            assert torch.equal(one_x, latent) == (anchored == section), (call, section, anchored)
        if section not in anchors:  # the 1x latent is the history: the first frame of the next section
            assert not torch.equal(one_x, torch.zeros_like(one_x)) or section == 5
    assert out.info["keyframes"] == [{"time": 0.27, "section": 2, "pinned_at": 0.2667},
                                     {"time": 0.55, "section": 4, "pinned_at": 0.5333}]
    # SigLIP: the mean over the start image and every pinned image (FramePack averages start and end).
    pinned = 4 if with_end else 3
    assert len(seen["siglip"]) == pinned
    mean = sum(seen["siglip"][1:], seen["siglip"][0]) / pinned
    assert all(torch.equal(e, mean.to(e.dtype)) for e in seen["embeds"])


def test_a_keyframe_changes_the_frames_and_none_changes_nothing(tiny_model: LoadedModel,
                                                              start_image: Image.Image) -> None:
    def frames(keyframes: tuple[tuple[int, Image.Image], ...]) -> np.ndarray:
        job = SectionJob(start=start_image.resize((64, 48)), end=None, section_prompts=["a cat"] * 3,
                         negative_prompt=None, height=48, width=64, window=1, steps=1, true_cfg=1.0,
                         guidance=10.0, reverse=True, keyframes=keyframes)
        return run_sections(tiny_model.pipe, job, torch.Generator().manual_seed(4), lambda *_: None)

    plain = frames(())
    assert np.array_equal(frames(()), plain)  # deterministic: a difference below is the keyframe's
    keyed = frames(((1, solid((250, 250, 0)).resize((64, 48))),))
    assert float(np.abs(keyed.astype(np.int16) - plain.astype(np.int16)).mean()) > 1


def test_keyframe_times_need_their_images(tiny_model: LoadedModel, tmp_path: Path, start_image: Image.Image) -> None:
    params = VideoParams(video_length=0.4, latent_window_size=1, steps=1, resolution=64, keyframe_times=[0.2])
    with pytest.raises(ValueError, match="0 keyframe images for 1 keyframe_times"):
        generate_video(tiny_model, params, start_image, None, tmp_path, RunContext(workdir=tmp_path))
