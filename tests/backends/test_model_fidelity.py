"""What the real model would show and the old tiny model hid (issue 10): prompts keep their spaces,
one-frame sampling uses FramePack's schedule, image jobs run on the FramePack (non-F1) transformer."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import transformers
from diffusers import HunyuanVideoFramepackTransformer3DModel
from transformers import LlamaTokenizerFast

from framepack_api.backends.base import RunContext
from framepack_api.backends.framepack.backend import FramepackBackend
from framepack_api.backends.framepack.loader import LoadedModel, SamplingMode, load_model
from framepack_api.backends.framepack.oneframe import one_frame_scheduler
from framepack_api.backends.framepack.tiny import HUNYUAN_DIR, HUNYUAN_SCHEDULER_CONFIG, TRANSFORMER_DIR
from framepack_api.media.png import read_png_parameters
from framepack_api.params import JobType
from framepack_api.settings import Settings

from .conftest import noise_image

PROMPTS = ["a cat in a garden", "A man walks, then turns around.", "日本語のプロンプト"]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_prompt_round_trips_through_the_loaded_llama_tokenizer(tiny_model: LoadedModel, prompt: str) -> None:
    tokenizer = tiny_model.pipe.tokenizer
    ids = tokenizer(prompt).input_ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == prompt
    # The way the pipeline calls it: the prompt inside HunyuanVideo's template, padded on the right.
    templated = tokenizer(f"<|start_header_id|>user<|end_header_id|>\n\n{prompt}<|eot_id|>", max_length=160,
                          padding="max_length", truncation=True)
    assert templated.attention_mask[0] == 1 and templated.attention_mask[-1] == 0
    assert f"\n\n{prompt}<|eot_id|>" in tokenizer.decode(templated.input_ids, skip_special_tokens=True)


@pytest.mark.skipif(int(transformers.__version__.split(".")[0]) < 5, reason="the Metaspace swap is transformers 5")
def test_the_class_the_repo_names_would_lose_the_spaces(tiny_settings: Settings, tiny_model: LoadedModel) -> None:
    """Why the loader does not let the pipeline load the tokenizer by its declared class: on transformers
    5 that class drops the ByteLevel pre-tokenizer of the real file format (what the old loader did)."""
    folder = tiny_settings.models_dir / "tiny" / HUNYUAN_DIR / "tokenizer"
    assert json.loads((folder / "tokenizer_config.json").read_text())["tokenizer_class"] == "LlamaTokenizerFast"
    assert json.loads((folder / "tokenizer.json").read_text())["pre_tokenizer"]["type"] == "ByteLevel"
    plain = LlamaTokenizerFast.from_pretrained(folder)
    assert plain.decode(plain("a cat in a garden").input_ids, skip_special_tokens=True) != "a cat in a garden"


def framepack_sigmas(latent_height: int, latent_width: int, steps: int, frames: int = 1) -> np.ndarray:
    """FramePack's schedule as its sampler defines it (k_diffusion_hunyuan: calculate_flux_mu,
    flux_time_shift), written out independently of the code under test."""
    tokens = frames * latent_height * latent_width // 4
    mu = min(0.5 + (1.15 - 0.5) / (4096 - 256) * (tokens - 256), math.log(7.0))
    t = np.linspace(1.0, 0.0, steps + 1)
    with np.errstate(divide="ignore"):
        return np.where(t > 0, math.exp(mu) / (math.exp(mu) + (1.0 / t - 1.0)), 0.0)


def test_the_tiny_scheduler_config_is_the_real_one(tiny_settings: Settings, tiny_model: LoadedModel) -> None:
    saved = json.loads((tiny_settings.models_dir / "tiny" / HUNYUAN_DIR / "scheduler" /
                        "scheduler_config.json").read_text())
    assert saved == HUNYUAN_SCHEDULER_CONFIG
    loaded = tiny_model.pipe.scheduler.config
    assert loaded["shift"] == 7.0 and loaded["use_dynamic_shifting"] is False


@pytest.mark.parametrize(("width", "height", "shift"), [(1216, 704, 2.7808), (640, 640, 2.0699)])
def test_one_frame_sigmas_follow_framepack(tiny_model: LoadedModel, width: int, height: int, shift: float) -> None:
    steps = 25
    scheduler = one_frame_scheduler(tiny_model, height // 8, width // 8, steps)
    expected = framepack_sigmas(height // 8, width // 8, steps)
    assert np.allclose(scheduler.sigmas.cpu().numpy(), expected, atol=1e-6)
    assert scheduler.config.shift == pytest.approx(shift, abs=1e-3)  # 2.78 at 1216×704, as musubi's
    assert tiny_model.pipe.scheduler.config.shift == 7.0  # the shared scheduler is left as it was


def test_image_job_samples_at_framepack_timesteps(tiny_settings: Settings, tiny_model: LoadedModel,
                                                 tmp_path: Path) -> None:
    """The timesteps the transformer actually receives in an image job (64×64: 8×8 latents)."""
    seen: list[float] = []

    def record(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        seen.append(float(kwargs["timestep"][0]))

    handle = tiny_model.pipe.transformer.register_forward_pre_hook(record, with_kwargs=True)
    try:
        FramepackBackend(tiny_settings, model=tiny_model).run(
            JobType.image, {"prompt": "a cat", "steps": 4, "width": 64, "height": 64, "seed": 1}, {},
            RunContext(workdir=tmp_path))
    finally:
        handle.remove()
    assert np.allclose(seen, framepack_sigmas(8, 8, 4)[:-1] * 1000.0, atol=1e-3)


@pytest.mark.parametrize(("width", "height"), [(640, 640), (832, 480), (512, 768)])
def test_video_schedule_with_the_real_config_is_framepacks_at_the_640_buckets(
        tiny_model: LoadedModel, width: int, height: int) -> None:
    """Video sampling goes through the pipeline, whose `mu` the real config ignores (static shift 7).
    FramePack's demo computes its shift from window 9 × the latent size, which reaches its cap of 7 for
    every 640 bucket, so the two schedules are the same there."""
    scheduler = type(tiny_model.pipe.scheduler).from_config(tiny_model.pipe.scheduler.config)
    steps = 25
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 0.0, steps + 1)[:-1].tolist(), mu=0.5)
    expected = framepack_sigmas(height // 8, width // 8, steps, frames=9)
    assert np.allclose(scheduler.sigmas.numpy(), expected, atol=1e-6)


class TransformerLoads:
    """A real ``from_pretrained`` of the tiny transformer for either mode, recording which was asked for."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.modes: list[SamplingMode] = []

    def __call__(self, mode: SamplingMode) -> Any:
        self.modes.append(mode)
        return HunyuanVideoFramepackTransformer3DModel.from_pretrained(self.folder, torch_dtype=torch.float32)


def test_image_jobs_run_on_the_framepack_transformer_after_an_f1_video(tiny_settings: Settings,
                                                                      tmp_path: Path) -> None:
    fresh = load_model(tiny_settings)  # its own pipe: this test swaps its transformer
    loads = TransformerLoads(tiny_settings.models_dir / "tiny" / TRANSFORMER_DIR)
    f1 = dataclasses.replace(fresh, preset="framepack-f1", transformer_mode="forward", transformer_loader=loads)
    backend = FramepackBackend(tiny_settings, model=f1)
    start = tmp_path / "start.png"
    noise_image(64, 64, seed=1).save(start)
    video = {"resolution": 64, "steps": 1, "latent_window_size": 2, "video_length": 0.2, "seed": 7,
             "use_teacache": False, "sampling_mode": "forward"}
    (tmp_path / "video").mkdir()
    backend.run(JobType.video, video, {"image": start}, RunContext(workdir=tmp_path / "video"))
    assert backend.preset == "framepack-f1" and loads.modes == []

    for job_type, params in [(JobType.image, {"prompt": "a", "steps": 1, "width": 64, "height": 64}),
                             (JobType.image_batch, {"prompts": ["a"], "steps": 1, "width": 64, "height": 64}),
                             (JobType.image_transfer, {"steps": 1, "width": 64, "height": 64})]:
        work = tmp_path / job_type.value
        work.mkdir()
        inputs = {"target_image": start, "source_image": start} if job_type is JobType.image_transfer else {}
        out = backend.run(job_type, params, inputs, RunContext(workdir=work))
        assert out.info["model"] == "framepack" and backend.preset == "framepack"
        png = out.files["image"] if "image" in out.files else out.files["image_000"]
        assert read_png_parameters(png)["settings"]["model"] == "framepack"
    assert loads.modes == ["reverse"]  # swapped once, before the first image job
    assert f1.transformer_mode == "reverse"
