"""LoRA: the three key formats on the real tiny transformer, scales, per-job application, path safety."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from framepack_api.backends.base import RunContext
from framepack_api.backends.framepack import lora as lora_module
from framepack_api.backends.framepack.backend import FramepackBackend
from framepack_api.backends.framepack.loader import LoadedModel
from framepack_api.lora_files import LoraError, list_loras, resolve_lora_path
from framepack_api.params import JobType
from framepack_api.settings import Settings

from .conftest import noise_image

HIDDEN = 20  # the tiny transformer's width (2 heads × 10)
MLP = 40
RANK = 4
IMAGE: dict[str, Any] = {"steps": 2, "width": 64, "height": 64, "seed": 3, "prompt": "a coat"}


def random_lora() -> dict[str, torch.Tensor]:
    """One LoRA in original HunyuanVideo terms: fused qkv of double block 0, linear1/linear2 of single 0."""
    g = torch.Generator().manual_seed(0)

    def t(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.5

    return {"qkv.down": t(RANK, HIDDEN), "qkv.up": t(3 * HIDDEN, RANK),
            "linear1.down": t(RANK, HIDDEN), "linear1.up": t(3 * HIDDEN + MLP, RANK),
            "linear2.down": t(RANK, HIDDEN + MLP), "linear2.up": t(HIDDEN, RANK)}


def as_original(w: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    p = "diffusion_model."
    return {f"{p}double_blocks.0.img_attn_qkv.lora_A.weight": w["qkv.down"],
            f"{p}double_blocks.0.img_attn_qkv.lora_B.weight": w["qkv.up"],
            f"{p}single_blocks.0.linear1.lora_A.weight": w["linear1.down"],
            f"{p}single_blocks.0.linear1.lora_B.weight": w["linear1.up"],
            f"{p}single_blocks.0.linear2.lora_A.weight": w["linear2.down"],
            f"{p}single_blocks.0.linear2.lora_B.weight": w["linear2.up"]}


def diffusers_pairs(w: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The same LoRA on diffusers' separate layers: fused outputs split, the down weight shared."""
    q, k, v = w["qkv.up"].split(HIDDEN)
    sq, sk, sv, mlp = w["linear1.up"].split([HIDDEN, HIDDEN, HIDDEN, MLP])
    d, s = "transformer_blocks.0.", "single_transformer_blocks.0."
    return {f"{d}attn.to_q": (w["qkv.down"], q), f"{d}attn.to_k": (w["qkv.down"], k),
            f"{d}attn.to_v": (w["qkv.down"], v), f"{s}attn.to_q": (w["linear1.down"], sq),
            f"{s}attn.to_k": (w["linear1.down"], sk), f"{s}attn.to_v": (w["linear1.down"], sv),
            f"{s}proj_mlp": (w["linear1.down"], mlp), f"{s}proj_out": (w["linear2.down"], w["linear2.up"])}


def as_diffusers(w: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for name, (down, up) in diffusers_pairs(w).items():
        out[f"transformer.{name}.lora_A.weight"] = down.clone()  # safetensors refuses shared storage
        out[f"transformer.{name}.lora_B.weight"] = up.clone()
    return out


def as_musubi(w: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Musubi's FramePack naming; alpha = rank/2, so the stored up weight is twice the effective one."""
    out = {}
    for name, (down, up) in diffusers_pairs(w).items():
        key = "lora_unet_" + name.replace(".", "_")
        out[f"{key}.lora_down.weight"] = down.clone()
        out[f"{key}.lora_up.weight"] = up * 2
        out[f"{key}.alpha"] = torch.tensor(RANK / 2)
    return out


def as_musubi_original(w: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Musubi's HunyuanVideo naming (original layer names), no alpha."""
    names = {"qkv": "lora_unet_double_blocks_0_img_attn_qkv", "linear1": "lora_unet_single_blocks_0_linear1",
             "linear2": "lora_unet_single_blocks_0_linear2"}
    out = {}
    for short, key in names.items():
        out[f"{key}.lora_down.weight"] = w[f"{short}.down"]
        out[f"{key}.lora_up.weight"] = w[f"{short}.up"]
    return out


@pytest.fixture
def lora_dir(tmp_path: Path) -> Path:
    root = tmp_path / "loras"
    (root / "styles").mkdir(parents=True)
    w = random_lora()
    save_file(as_diffusers(w), str(root / "peft.safetensors"))
    save_file(as_musubi(w), str(root / "styles" / "musubi.safetensors"))
    save_file(as_musubi_original(w), str(root / "musubi_hv.safetensors"))
    save_file(as_original(w), str(root / "original.safetensors"))
    other = {k: -v if "lora_B" in k else v for k, v in as_original(w).items()}  # minus the same update
    save_file(other, str(root / "other.safetensors"))
    return root


@pytest.fixture
def backend(tiny_settings: Settings, tiny_model: LoadedModel, lora_dir: Path) -> Iterator[FramepackBackend]:
    yield FramepackBackend(tiny_settings.model_copy(update={"lora_dir": lora_dir}), model=tiny_model)
    # The tiny model is shared by the whole session: leave no adapter layers behind.
    if getattr(tiny_model.pipe.transformer, "peft_config", None):
        tiny_model.pipe.transformer.unload_lora()


def image(backend: FramepackBackend, tmp_path: Path, **params: Any) -> np.ndarray:
    workdir = tmp_path / f"run-{len(list(tmp_path.glob('run-*')))}"
    workdir.mkdir()
    out = backend.run(JobType.image, {**IMAGE, **params}, {}, RunContext(workdir=workdir))
    with Image.open(out.files["image"]) as img:
        return np.asarray(img, dtype=np.int16)


def test_every_format_gives_the_same_change(backend: FramepackBackend, tmp_path: Path) -> None:
    base = image(backend, tmp_path)
    results = {name: image(backend, tmp_path, lora_paths=[name])
               for name in ("peft.safetensors", "styles/musubi.safetensors", "musubi_hv.safetensors",
                            "original.safetensors")}
    reference = results["peft.safetensors"]
    assert np.abs(reference - base).max() > 0
    for name, result in results.items():
        assert np.abs(result - reference).max() <= 1, name


def test_scale_zero_is_the_base_and_nothing_leaks(backend: FramepackBackend, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[str] = []
    real_load = lora_module.load_lora_file
    monkeypatch.setattr(lora_module, "load_lora_file", lambda p, t: loads.append(p.name) or real_load(p, t))
    base = image(backend, tmp_path)
    zero = image(backend, tmp_path, lora_paths=["peft.safetensors"], lora_scales=[0.0])
    one = image(backend, tmp_path, lora_paths=["peft.safetensors"], lora_scales=[1.0])
    assert np.array_equal(zero, base)
    assert np.abs(one - base).max() > 0
    assert loads == ["peft.safetensors"]  # the same set twice in a row: read once
    assert np.array_equal(image(backend, tmp_path), base)  # the next job does not inherit it
    # Two LoRAs that cancel each other out (other = -original) give the base again.
    both = image(backend, tmp_path, lora_paths=["original.safetensors", "other.safetensors"])
    assert np.abs(both - base).max() <= 1
    assert loads == ["peft.safetensors", "original.safetensors", "other.safetensors"]


def test_video_jobs_take_loras(backend: FramepackBackend, tmp_path: Path) -> None:
    params = {"prompt": "p", "seed": 1, "video_length": 0.3, "latent_window_size": 2, "steps": 2,
              "resolution": 64, "use_teacache": False}

    def frames(**extra: Any) -> np.ndarray:
        workdir = tmp_path / f"video-{len(list(tmp_path.glob('video-*')))}"
        workdir.mkdir()
        (workdir / "in.png").parent.mkdir(exist_ok=True)
        noise_image(64, 64, seed=1).save(workdir / "in.png")
        out = backend.run(JobType.video, {**params, **extra}, {"image": workdir / "in.png"},
                          RunContext(workdir=workdir))
        with av.open(str(out.files["video"])) as container:
            return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]).astype(np.int16)

    base = frames()
    styled = frames(lora_paths=["original.safetensors"])
    assert np.abs(styled - base).max() > 0
    assert np.array_equal(frames(), base)


def test_incompatible_lora_is_refused(backend: FramepackBackend, lora_dir: Path, tmp_path: Path) -> None:
    save_file({"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": torch.zeros(4, 3072),
               "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": torch.zeros(3072, 4)},
              str(lora_dir / "big.safetensors"))
    with pytest.raises(LoraError, match="do not fit"):
        image(backend, tmp_path, lora_paths=["big.safetensors"])


@pytest.mark.parametrize("name", ["/etc/passwd.safetensors", "../outside.safetensors", "styles/../../x.safetensors",
                                  "missing.safetensors", "link.safetensors", "C:\\x.safetensors",
                                  "notes.txt", "", "~/x.safetensors"])
def test_path_tricks_are_refused(lora_dir: Path, tmp_path: Path, name: str) -> None:
    outside = tmp_path / "outside.safetensors"
    save_file({"a.lora_A.weight": torch.zeros(1, 1)}, str(outside))
    os.symlink(outside, lora_dir / "link.safetensors")
    (lora_dir / "notes.txt").write_text("not a lora")
    with pytest.raises(LoraError):
        resolve_lora_path(lora_dir, name)
    assert resolve_lora_path(lora_dir, "styles/musubi.safetensors").is_file()


def test_without_lora_dir_every_name_is_refused() -> None:
    with pytest.raises(LoraError, match="LORA_DIR"):
        resolve_lora_path(None, "peft.safetensors")


def test_list_loras_names_formats_and_skips_links_out(lora_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.safetensors"
    save_file({"a.lora_A.weight": torch.zeros(1, 1)}, str(outside))
    os.symlink(outside, lora_dir / "link.safetensors")
    listed = {entry["name"]: entry["format"] for entry in list_loras(lora_dir)}
    assert listed == {"peft.safetensors": "diffusers", "styles/musubi.safetensors": "musubi",
                      "musubi_hv.safetensors": "musubi", "original.safetensors": "hunyuan_original",
                      "other.safetensors": "hunyuan_original"}
