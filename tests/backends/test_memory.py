"""Memory modes on the real diffusers classes: group/leaf offloading of the tiny pipeline with the CPU
as onload device (diffusers' hooks and transfers run for real; only VRAM itself is absent), resident
blocks chosen by a job's gpu_memory_preservation, and auto's choice for the real model's sizes.

Free VRAM cannot be measured without a GPU: the tests that plan residency hand the model a fixed
free-memory figure (``LoadedModel.free_bytes``), the one stand-in here.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from framepack_api.backends.base import RunContext
from framepack_api.backends.framepack import fullsize, memory
from framepack_api.backends.framepack.backend import FramepackBackend
from framepack_api.backends.framepack.loader import LoadedModel, load_model
from framepack_api.backends.framepack.tiny import TRANSFORMER_DIR
from framepack_api.backends.framepack.video import first_block_cache
from framepack_api.media.video import read_frames
from framepack_api.params import JobType
from framepack_api.settings import Settings

GIB = memory.GIB


def tiny(data_dir: Path, mode: str) -> LoadedModel:
    return load_model(Settings(model="tiny", data_dir=data_dir, device="cpu", memory_mode=mode,
                               _env_file=None))  # type: ignore[call-arg]


def sample(model: LoadedModel, image: Image.Image, cache: bool) -> np.ndarray:
    """Raw pipeline frames (float), so offloaded and plain runs compare exactly, not through x264."""
    kwargs: dict[str, Any] = {
        "image": image, "prompt": "a cat in a garden", "height": 48, "width": 64, "num_frames": 5,
        "latent_window_size": 2, "num_inference_steps": 3, "guidance_scale": 10.0,
        "generator": torch.Generator().manual_seed(3), "output_type": "np"}
    cm = first_block_cache(model.pipe.transformer, 1) if cache else contextlib.nullcontext()
    with cm:
        return np.asarray(model.pipe(**kwargs).frames[0])


def offloaded(model: LoadedModel) -> list[bool]:
    return [memory.is_group_offloaded(b) for b in memory.transformer_blocks(model.pipe.transformer)]


@pytest.mark.parametrize("mode", ["group", "leaf"])
def test_offloaded_pipeline_samples_exactly_like_the_plain_one(tiny_model: LoadedModel, tiny_data_dir: Path,
                                                               start_image: Image.Image, mode: str) -> None:
    model = tiny(tiny_data_dir, mode)
    assert model.placement == mode
    # Every component carries diffusers' group offloading hooks; the VAE decodes in tiles.
    for name, module in memory.torch_modules(model.pipe).items():
        assert memory.is_group_offloaded(module), name
    assert model.pipe.vae.use_tiling
    # The pipeline calls vae.decode(), not forward(): the decoder must onload itself (block level)
    # or its layers one by one (leaf level), not wait for a VAE forward that never comes.
    decoder = model.pipe.vae.decoder
    assert memory.is_group_offloaded(decoder) if mode == "leaf" else (
        decoder._diffusers_hook.get_hook("group_offloading") is not None)
    assert offloaded(model) == [True, True]  # no VRAM to keep blocks in: every block is streamed
    for cache in (False, True):  # with and without the first-block cache (use_teacache)
        plain, off = sample(tiny_model, start_image, cache), sample(model, start_image, cache)
        assert plain.shape == off.shape == (9, 48, 64, 3)
        assert np.array_equal(plain, off), (mode, cache)


def test_preservation_decides_the_resident_blocks(tiny_model: LoadedModel, tiny_data_dir: Path,
                                                  start_image: Image.Image) -> None:
    model = tiny(tiny_data_dir, "group")
    sizes = [memory.module_bytes(b) for b in memory.transformer_blocks(model.pipe.transformer)]
    # A device with 6 GiB + the first block free (blocks already resident count as available).
    model.free_bytes = lambda _device: 6 * GIB + sizes[0] + 100 - sum(
        size for size, off in zip(sizes, offloaded(model), strict=True) if not off)
    plain = sample(tiny_model, start_image, cache=False)
    expected = [(6.0, 1, [False, True]), (5.0, 2, [False, False]), (7.0, 0, [True, True]),
                (6.0, 1, [False, True])]
    for preserve, resident, layout in expected:
        info = model.prepare_memory(preserve)
        assert info == {"mode": "group", "gpu_memory_preservation": preserve, "resident_blocks": resident,
                        "offloaded_blocks": 2 - resident,
                        "resident_gib": round(sum(sizes[:resident]) / GIB, 3)}
        assert offloaded(model) == layout
        assert np.array_equal(sample(model, start_image, cache=False), plain), preserve


def test_a_job_reports_its_memory_layout(tiny_data_dir: Path, tmp_path: Path, start_image: Image.Image) -> None:
    """Through the backend: the job's gpu_memory_preservation reaches the layout, and the video is
    the one the plain model makes."""
    settings = Settings(model="tiny", data_dir=tiny_data_dir, device="cpu", _env_file=None)  # type: ignore[call-arg]
    model = tiny(tiny_data_dir, "group")
    first = memory.module_bytes(memory.transformer_blocks(model.pipe.transformer)[0])
    model.free_bytes = lambda _device: 2 * GIB + first + 100
    params = {"resolution": 64, "steps": 2, "latent_window_size": 2, "video_length": 0.2, "seed": 7,
              "use_teacache": False, "gpu_memory_preservation": 2.0}
    image_path = tmp_path / "start.png"
    start_image.save(image_path)
    outs = {}
    for name, backend in (("group", FramepackBackend(settings, model)), ("plain", FramepackBackend(settings))):
        work = tmp_path / name
        work.mkdir()
        outs[name] = backend.run(JobType.video, params, {"image": image_path}, RunContext(workdir=work))
    assert outs["group"].info["memory"] == {"mode": "group", "gpu_memory_preservation": 2.0,
                                            "resident_blocks": 1, "offloaded_blocks": 1,
                                            "resident_gib": round(first / GIB, 3)}
    assert outs["plain"].info["memory"] == {"mode": "cpu", "gpu_memory_preservation": 2.0,
                                            "preservation_applied": False}
    a, b = (read_frames(outs[n].files["video"]) for n in ("group", "plain"))
    assert a.shape == b.shape and float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()) < 1.5


def test_plan_resident_blocks() -> None:
    assert memory.plan_resident_blocks([4, 4, 2], available_bytes=20, preserve_bytes=11) == 2
    assert memory.plan_resident_blocks([4, 4, 2], available_bytes=20, preserve_bytes=0) == 3
    assert memory.plan_resident_blocks([4, 4, 2], available_bytes=13, preserve_bytes=10) == 0
    assert memory.plan_resident_blocks([4], available_bytes=5, preserve_bytes=10) == 0


@pytest.fixture(scope="module")
def real_sizes() -> memory.ModelSizes:
    return memory.ModelSizes.of(list(fullsize.meta_components().values()))


def test_real_model_sizes(real_sizes: memory.ModelSizes) -> None:
    # bf16 transformer ~24 GiB of 39 GiB; a group-offloaded component never needs more than ~2 GiB.
    assert 39 * GIB < real_sizes.total < 40 * GIB
    assert 23.9 * GIB < real_sizes.largest_component < 24.1 * GIB
    assert 2.0 * GIB < real_sizes.group_peak < 2.1 * GIB
    assert real_sizes.leaf_peak < 1.1 * GIB


@pytest.mark.parametrize(("card_gib", "preserve", "expected"), [
    (4, 6.0, "leaf"), (6, 6.0, "group"), (8, 6.0, "group"), (12, 6.0, "group"), (16, 6.0, "group"),
    (24, 6.0, "group"), (32, 6.0, "group"), (40, 6.0, "offload"), (48, 6.0, "offload"),
    (48, 16.0, "group"), (80, 6.0, "gpu"), (80, 34.0, "offload"),
])
def test_auto_chooses_from_free_vram(real_sizes: memory.ModelSizes, card_gib: int, preserve: float,
                                     expected: str) -> None:
    free = int((card_gib - 0.6) * GIB)  # what a card reports free after CUDA's context
    cuda = torch.device("cuda")
    assert memory.choose_placement("auto", cuda, real_sizes, preserve, free_bytes=free) == expected


def test_explicit_modes_and_cpu(real_sizes: memory.ModelSizes) -> None:
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    for mode in ("gpu", "offload", "group", "leaf"):
        assert memory.choose_placement(mode, cuda, real_sizes, 6.0, free_bytes=0) == mode  # type: ignore[arg-type]
    assert memory.choose_placement("auto", cpu, real_sizes, 6.0) == "cpu"
    assert memory.choose_placement("offload", cpu, real_sizes, 6.0) == "cpu"  # needs an accelerator
    assert memory.choose_placement("group", cpu, real_sizes, 6.0) == "group"


def test_real_model_residency_on_a_24_gb_card() -> None:
    """The plan for the real transformer: with 6 GB preserved on a 24 GB card, the 20 double blocks
    (0.63 GiB each) and some single blocks (0.26 GiB) stay; preserving more keeps fewer."""
    with torch.device("meta"):
        blocks = memory.transformer_blocks(fullsize.transformer().to(torch.bfloat16))
    sizes = [memory.module_bytes(b) for b in blocks]
    assert len(sizes) == 60
    free = int(23.4 * GIB)
    six = memory.plan_resident_blocks(sizes, free, 6 * GIB)
    twelve = memory.plan_resident_blocks(sizes, free, 12 * GIB)
    assert 20 < six < 60 and twelve < six
    assert sum(sizes[:six]) <= free - 6 * GIB < sum(sizes[:six + 1])


def test_swapped_transformer_is_offloaded_too(tiny_model: LoadedModel, tiny_data_dir: Path,
                                              start_image: Image.Image) -> None:
    """A sampling-mode swap in group mode: the old transformer loses its hooks, the new one is
    group-offloaded with the default preservation, and sampling is unchanged."""
    from diffusers import HunyuanVideoFramepackTransformer3DModel

    model = tiny(tiny_data_dir, "group")
    model.transformer_mode = "reverse"  # as a real preset: the tiny checkpoint stands in for both
    model.transformer_loader = lambda _mode: HunyuanVideoFramepackTransformer3DModel.from_pretrained(
        tiny_data_dir / "models" / "tiny" / TRANSFORMER_DIR)
    old = model.pipe.transformer
    model.use_sampling_mode("forward")
    assert model.pipe.transformer is not old and not memory.is_group_offloaded(old)
    assert memory.is_group_offloaded(model.pipe.transformer) and offloaded(model) == [True, True]
    assert np.array_equal(sample(model, start_image, cache=False), sample(tiny_model, start_image, cache=False))


def test_lora_on_a_group_offloaded_transformer(tiny_model: LoadedModel, tiny_data_dir: Path, tmp_path: Path) -> None:
    """Loading a LoRA makes diffusers re-apply group offloading to the whole transformer; the job's
    planning then restores the resident blocks, and the video is the plain model's with the LoRA."""
    from safetensors.torch import save_file

    from .conftest import noise_image
    from .test_lora import as_diffusers, random_lora

    loras = tmp_path / "loras"
    loras.mkdir()
    save_file(as_diffusers(random_lora()), str(loras / "style.safetensors"))
    settings = Settings(model="tiny", data_dir=tiny_data_dir, device="cpu", lora_dir=loras,
                        _env_file=None)  # type: ignore[call-arg]
    model = tiny(tiny_data_dir, "group")
    first = memory.module_bytes(memory.transformer_blocks(model.pipe.transformer)[0])
    # Room for the first block with its LoRA layers (a few kB), not for the second (18 kB).
    model.free_bytes = lambda _device: 2 * GIB + first + 8000 - sum(
        memory.module_bytes(b) for b, off in zip(memory.transformer_blocks(model.pipe.transformer),
                                                  offloaded(model), strict=True) if not off)
    noise_image(64, 64, seed=1).save(tmp_path / "in.png")
    params = {"prompt": "p", "seed": 1, "video_length": 0.3, "latent_window_size": 2, "steps": 2,
              "resolution": 64, "use_teacache": False, "gpu_memory_preservation": 2.0}

    def frames(backend: FramepackBackend, name: str, **extra: Any) -> tuple[np.ndarray, dict[str, Any]]:
        work = tmp_path / name
        work.mkdir()
        out = backend.run(JobType.video, {**params, **extra}, {"image": tmp_path / "in.png"},
                          RunContext(workdir=work))
        return read_frames(out.files["video"]).astype(np.int16), out.info["memory"]

    group, plain = FramepackBackend(settings, model), FramepackBackend(settings, tiny_model)
    try:
        styled, layout = frames(group, "group-lora", lora_paths=["style.safetensors"])
        reference, _ = frames(plain, "plain-lora", lora_paths=["style.safetensors"])
        base, _ = frames(plain, "plain")
    finally:
        tiny_model.pipe.transformer.unload_lora()  # the session's shared model: leave no adapters
    assert layout["resident_blocks"] == 1 and offloaded(model) == [False, True]
    assert float(np.abs(styled - reference).mean()) < 1.5
    assert float(np.abs(styled - base).mean()) > 5 * max(float(np.abs(styled - reference).mean()), 0.1)


def test_free_vram_counts_the_allocator_cache_and_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """The arithmetic of cuda_free_bytes, with CUDA's counters standing in (no GPU here)."""
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda _d=None: (60 * GIB, 80 * GIB))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda _d=None: 15 * GIB)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda _d=None: 10 * GIB)
    monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction", lambda _d=None: 1.0)
    assert memory.cuda_free_bytes(cuda) == 65 * GIB  # 5 GiB cached but unused count as free
    monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction", lambda _d=None: 0.25)
    assert memory.cuda_free_bytes(cuda) == 10 * GIB  # a 20 GiB cap, 10 allocated
