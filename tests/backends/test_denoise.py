"""The shared denoising loop (denoise.py), through one-frame sampling on the real tiny transformer:
one transformer call per step without true CFG, two with it, and a raising hook stops the loop."""

from __future__ import annotations

from typing import Any

import pytest

from framepack_api.backends.framepack.loader import LoadedModel
from framepack_api.backends.framepack.oneframe import Layout, Sampling, encode_conditioning, sample_latents

from .conftest import noise_image


class Stop(Exception):
    pass


def count_calls(model: LoadedModel, cfg: float, stop_at: int | None) -> tuple[int, list[int]]:
    transformer = model.pipe.transformer
    calls = 0
    steps: list[int] = []

    def counted(*_: Any) -> None:
        nonlocal calls
        calls += 1

    def on_step(step: int) -> None:
        steps.append(step)
        if step == stop_at:
            raise Stop

    cond = encode_conditioning(model, noise_image(64, 48, seed=3))
    handle = transformer.register_forward_hook(counted)
    try:
        sample_latents(model, ["a cat"], [1], cond, Layout(target_index=9, window=9),
                       Sampling(steps=3, cfg=cfg, gs=10.0, negative_prompt="blurry"), on_step)
    except Stop:
        pass
    finally:
        handle.remove()
    return calls, steps


@pytest.mark.parametrize(("cfg", "per_step"), [(1.0, 1), (3.0, 2)])
def test_one_call_per_step_and_a_second_with_true_cfg(tiny_model: LoadedModel, cfg: float, per_step: int) -> None:
    assert count_calls(tiny_model, cfg, stop_at=None) == (3 * per_step, [1, 2, 3])


def test_a_raising_hook_stops_the_loop_after_its_step(tiny_model: LoadedModel) -> None:
    assert count_calls(tiny_model, 3.0, stop_at=1) == (2, [1])

