"""The project's section loop against diffusers' HunyuanVideoFramepackPipeline call, on the tiny model."""

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
from framepack_api.backends.framepack.section_loop import SectionJob, reverse_paddings, run_sections
from framepack_api.backends.framepack.video import generate_video, pipeline_num_frames, to_uint8
from framepack_api.params import VideoParams

HEIGHT, WIDTH, WINDOW, STEPS = 48, 64, 2, 2


def loop_frames(model: LoadedModel, image: Image.Image, end: Image.Image | None, prompts: list[str],
                reverse: bool, seed: int, cfg: float = 1.0, negative: str | None = None) -> np.ndarray:
    job = SectionJob(start=image, end=end, section_prompts=prompts, negative_prompt=negative,
                     height=HEIGHT, width=WIDTH, window=WINDOW, steps=STEPS, true_cfg=cfg, guidance=10.0,
                     reverse=reverse)
    return run_sections(model.pipe, job, torch.Generator().manual_seed(seed), lambda *_: None)


@contextlib.contextmanager
def pipeline_averages_end_embeds(model: LoadedModel, end: Image.Image | None) -> Iterator[None]:
    """Make the pipeline condition on the mean SigLIP embedding of start and end image.

    FramePack (its PR 167, which the pipeline credits) averages the two; diffusers 0.42's pipeline
    computes the mean into ``last_image_embeds`` and never uses it, so it ignores the end image's
    embedding. The loop follows FramePack; for the comparison the pipeline's first ``encode_image``
    (the start image's) answers with the mean, which its second call (the end image's) then cannot
    change.
    """
    if end is None:
        yield
        return
    pipe = model.pipe
    real = pipe.encode_image
    end_pixels = pipe.video_processor.preprocess(end, HEIGHT, WIDTH)
    calls = 0

    def encode_image(image: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        nonlocal calls
        calls += 1
        embeds = real(image, *args, **kwargs)
        return (embeds + real(end_pixels, *args, **kwargs)) / 2 if calls == 1 else embeds

    pipe.encode_image = encode_image
    try:
        yield
    finally:
        del pipe.encode_image
    assert calls == 2


def pipeline_frames(model: LoadedModel, image: Image.Image, end: Image.Image | None, prompt: str,
                    sections: int, reverse: bool, seed: int, cfg: float = 1.0,
                    negative: str | None = None) -> np.ndarray:
    kwargs: dict[str, Any] = {
        "image": image, "last_image": end, "prompt": prompt, "negative_prompt": negative,
        "height": HEIGHT, "width": WIDTH, "num_frames": pipeline_num_frames(sections, WINDOW),
        "latent_window_size": WINDOW, "num_inference_steps": STEPS, "true_cfg_scale": cfg,
        "guidance_scale": 10.0, "generator": torch.Generator().manual_seed(seed), "output_type": "np",
        "sampling_type": "inverted_anti_drifting" if reverse else "vanilla"}
    with pipeline_averages_end_embeds(model, end):
        return to_uint8(np.asarray(model.pipe(**kwargs).frames[0]))


def assert_same_frames(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape
    # Same operations in the same order: equal up to one uint8 level from float rounding.
    assert torch.allclose(torch.from_numpy(ours).float(), torch.from_numpy(theirs).float(), atol=1.0, rtol=0)


@pytest.mark.parametrize(("mode", "with_end", "sections"), [
    ("reverse", False, 2), ("reverse", True, 2), ("forward", False, 2), ("reverse", True, 5)])
def test_loop_makes_the_pipelines_frames(tiny_model: LoadedModel, start_image: Image.Image,
                                          end_image: Image.Image, mode: str, with_end: bool,
                                          sections: int) -> None:
    start = start_image.resize((WIDTH, HEIGHT))
    end = end_image.resize((WIDTH, HEIGHT)) if with_end else None
    reverse = mode == "reverse"
    ours = loop_frames(tiny_model, start, end, ["a cat in a garden"] * sections, reverse, seed=5)
    theirs = pipeline_frames(tiny_model, start, end, "a cat in a garden", sections, reverse, seed=5)
    assert ours.shape[0] == 4 * sections * WINDOW + 1
    assert_same_frames(ours, theirs)
    # The comparison can fail: another seed gives other frames.
    other = loop_frames(tiny_model, start, end, ["a cat in a garden"] * sections, reverse, seed=6)
    assert float(np.abs(other.astype(np.int16) - ours.astype(np.int16)).mean()) > 5


def test_loop_with_true_cfg_makes_the_pipelines_frames(tiny_model: LoadedModel, start_image: Image.Image) -> None:
    start = start_image.resize((WIDTH, HEIGHT))
    ours = loop_frames(tiny_model, start, None, ["a dog"] * 2, True, seed=9, cfg=3.0, negative="blurry")
    theirs = pipeline_frames(tiny_model, start, None, "a dog", 2, True, seed=9, cfg=3.0, negative="blurry")
    assert_same_frames(ours, theirs)


def test_reverse_paddings_follow_framepack() -> None:
    assert reverse_paddings(1) == [0]
    assert reverse_paddings(4) == [3, 2, 1, 0]
    assert reverse_paddings(6) == [3, 2, 2, 2, 1, 0]


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_each_section_is_conditioned_on_its_scheduled_prompt(tiny_model: LoadedModel, tmp_path: Path,
                                                             start_image: Image.Image, mode: str) -> None:
    """Which prompt every transformer call was conditioned on, in making order: reverse sampling makes the
    video's last section first, so it must get the last prompt; a prompt used twice is encoded once."""
    pipe = tiny_model.pipe
    prompts = ["alpha dances", "beta waves"]
    # The CLIP pooled embedding tells the prompts apart: the tiny Llama tokenizer spends all its
    # tokens on the prompt template, so its hidden states are the same for every prompt.
    embeds = [pipe.encode_prompt(prompt=p, device=torch.device("cpu"), max_sequence_length=256)[1]
              for p in prompts]
    assert not torch.equal(*embeds)
    seen: list[int] = []

    def record(_m: torch.nn.Module, _args: Any, kwargs: dict[str, Any]) -> None:
        [index] = [i for i, e in enumerate(embeds) if torch.equal(kwargs["pooled_projections"], e)]
        seen.append(index)

    text_calls: list[int] = []
    hooks = [pipe.transformer.register_forward_pre_hook(record, with_kwargs=True),
             pipe.text_encoder.register_forward_pre_hook(lambda *_: text_calls.append(1))]
    # window 1: sections of 4 frames, starting at 0, 0.133 and 0.267 s.
    params = VideoParams(prompt="[0s] alpha dances [0.1s] beta waves [0.25s] beta waves", video_length=0.4,
                         latent_window_size=1, steps=2, resolution=64, seed=3, use_teacache=False,
                         sampling_mode=mode)
    try:
        out = generate_video(tiny_model, params, start_image, None, tmp_path, RunContext(workdir=tmp_path),
                             preview_every=0, partial_videos=False)
    finally:
        for hook in hooks:
            hook.remove()
    in_time_order = [0, 1, 1]  # not a palindrome: a wrong making order shows
    making_order = in_time_order[::-1] if mode == "reverse" else in_time_order
    assert seen == [i for i in making_order for _ in range(2)]  # two steps per section
    assert len(text_calls) == 2  # two distinct prompts, three sections
    assert out.info["prompt_schedule"] == [
        {"start": 0.0, "prompt": "alpha dances", "sections": [1]},
        {"start": 0.1, "prompt": "beta waves", "sections": [2]},
        {"start": 0.25, "prompt": "beta waves", "sections": [3]}]
