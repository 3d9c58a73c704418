"""RoPE batch (FramePack-eichi's): one image per target index in batched passes, on the real tiny transformer.

The contract: image i of a RoPE batch is the image a single one-frame job makes at target index i with
the same seed, and the images come in ascending index order, each labelled with its index.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers.models import embeddings
from PIL import Image

from framepack_api.backends.base import JobOutput, RunContext
from framepack_api.backends.framepack.backend import FramepackBackend
from framepack_api.backends.framepack.loader import LoadedModel
from framepack_api.backends.framepack.oneframe import Layout, Sampling, encode_conditioning, sample_latents
from framepack_api.backends.framepack.rope_batch import _install_stacked_apply
from framepack_api.media.png import read_png_parameters
from framepack_api.params import JobType
from framepack_api.settings import Settings

from .conftest import noise_image

SMALL: dict[str, Any] = {"steps": 2, "width": 64, "height": 64, "prompt": "a red coat", "seed": 21}


@pytest.fixture
def backend(tiny_settings: Settings, tiny_model: LoadedModel) -> FramepackBackend:
    return FramepackBackend(tiny_settings, model=tiny_model)


def run(backend: FramepackBackend, tmp_path: Path, params: dict[str, Any], image: Image.Image) -> JobOutput:
    workdir = tmp_path / f"work-{len(list(tmp_path.iterdir()))}"
    workdir.mkdir()
    image.save(workdir / "input.png")
    return backend.run(JobType.image, params, {"input_image": workdir / "input.png"}, RunContext(workdir=workdir))


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.int16)


def test_each_image_equals_a_single_job_at_its_index_in_ascending_order(backend: FramepackBackend,
                                                                        tiny_model: LoadedModel,
                                                                        tmp_path: Path) -> None:
    start = noise_image(64, 64, seed=3)
    calls: list[tuple[int, tuple[int, ...]]] = []

    def record(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        calls.append((kwargs["hidden_states"].shape[0], tuple(kwargs["indices_latents"].shape)))

    handle = tiny_model.pipe.transformer.register_forward_pre_hook(record, with_kwargs=True)
    try:  # given out of order: made and returned in ascending order, 3 per pass (passes of 3 + 2)
        out = run(backend, tmp_path, {**SMALL, "rope_batch": {"indices": [12, 1, 30, 5, 9]},
                                      "rope_batch_size": 3}, start)
    finally:
        handle.remove()
    targets = [1, 5, 9, 12, 30]
    # One batched forward per step per pass, each item with its own row of RoPE indices.
    assert calls == [(3, (3, 1))] * 2 + [(2, (2, 1))] * 2
    assert out.info["target_indices"] == targets and out.seed == 21
    assert sorted(out.files) == [f"image_{i:03d}" for i in range(5)] + ["zip"]

    singles = [pixels(run(backend, tmp_path, {**SMALL, "target_index": t}, start).files["image"]) for t in targets]
    for i, target in enumerate(targets):
        meta = read_png_parameters(out.files[f"image_{i:03d}"])
        assert meta["settings"]["target_index"] == target and meta["settings"]["index"] == i
        assert meta["seed"] == 21
        made = pixels(out.files[f"image_{i:03d}"])
        assert np.abs(made - singles[i]).max() <= 1  # float rounding only
        # ... while every other index's image differs in many more pixels: a swapped order fails.
        own = np.count_nonzero(made != singles[i])
        assert all(np.count_nonzero(made != other) > 4 * own + 100 for j, other in enumerate(singles) if j != i)


@pytest.mark.parametrize(("cfg", "use_2x"), [(1.0, True), (2.5, False)])
def test_batched_latents_match_one_index_at_a_time(tiny_model: LoadedModel, cfg: float, use_2x: bool) -> None:
    """At the latent level, with true CFG and with dropped 2x history too (both run the batch twice per step)."""
    cond = encode_conditioning(tiny_model, noise_image(64, 48, seed=4))
    sampling = Sampling(steps=2, cfg=cfg, gs=10.0, negative_prompt="blurry")
    targets = [0, 3, 17]

    def sample(layout: Layout, batch: list[int] | None) -> torch.Tensor:
        count = len(batch) if batch else 1
        return sample_latents(tiny_model, ["a cat"] * count, [5] * count, cond, layout, sampling,
                              lambda _step: None, batch)

    together = sample(Layout(target_index=9, window=9, use_2x=use_2x), targets)
    for i, target in enumerate(targets):
        alone = sample(Layout(target_index=target, window=9, use_2x=use_2x), None)
        assert torch.allclose(together[i], alone[0], atol=1e-5)
        if i:
            assert not torch.allclose(together[i], together[i - 1], atol=1e-3)


def test_apply_rotary_emb_is_unchanged_for_what_it_accepted_before() -> None:
    _install_stacked_apply()
    inner = embeddings.apply_rotary_emb.__wrapped__  # type: ignore[attr-defined]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 7, 2, 8, generator=g)
    cos, sin = torch.randn(7, 8, generator=g), torch.randn(7, 8, generator=g)
    assert torch.equal(embeddings.apply_rotary_emb(x, (cos, sin), sequence_dim=1),
                       inner(x, (cos, sin), sequence_dim=1))
    # A stacked table (7 tokens, 3 items × 8) gives item b its own slice.
    stacked = torch.randn(7, 24, generator=g), torch.randn(7, 24, generator=g)
    out = embeddings.apply_rotary_emb(x, stacked, sequence_dim=1)
    for b in range(3):
        part = (stacked[0][:, b * 8:(b + 1) * 8], stacked[1][:, b * 8:(b + 1) * 8])
        assert torch.equal(out[b:b + 1], inner(x[b:b + 1], part, sequence_dim=1))
