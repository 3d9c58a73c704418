"""Presets, placement and the real-model loading path.

Real weights cannot be downloaded here, so the real path is exercised with ``from_pretrained``
replaced by a recorder that hands back the tiny model's components (the only mock in these tests).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from diffusers import HunyuanVideoFramepackPipeline, HunyuanVideoFramepackTransformer3DModel
from transformers import PreTrainedTokenizerFast, SiglipImageProcessor, SiglipVisionModel

from framepack_api.backends.framepack.loader import LoadedModel, load_model, resolve_preset
from framepack_api.settings import Settings


def settings(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(data_dir=tmp_path, _env_file=None, **kw)  # type: ignore[call-arg]


def test_auto_without_cuda_is_tiny_and_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.WARNING):
        assert resolve_preset(settings(tmp_path)) == "tiny"
    assert any("TINY" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_auto_with_cuda_is_the_real_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_preset(settings(tmp_path)) == "framepack"


@pytest.mark.parametrize("name", ["tiny", "framepack", "framepack-f1"])
def test_explicit_preset_wins(tmp_path: Path, name: str) -> None:
    assert resolve_preset(settings(tmp_path, model=name)) == name


def test_default_resolution_setting(tmp_path: Path, tiny_model: LoadedModel) -> None:
    model = load_model(settings(tmp_path, model="tiny", default_resolution=96, device="cpu"))
    assert model.default_resolution == 96
    assert model.device == torch.device("cpu")


class Recorder:
    """Replaces from_pretrained on the real classes; returns the tiny model's components."""

    def __init__(self, tiny: LoadedModel) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.tiny = tiny

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        pipe = self.tiny.pipe
        # Names spelled out: without torchvision, transformers aliases SiglipImageProcessor to a Pil class.
        fakes: list[tuple[type, str, Any]] = [
            (HunyuanVideoFramepackTransformer3DModel, "HunyuanVideoFramepackTransformer3DModel",
             lambda: pipe.transformer),
            (SiglipImageProcessor, "SiglipImageProcessor", lambda: pipe.feature_extractor),
            (SiglipVisionModel, "SiglipVisionModel", lambda: pipe.image_encoder),
            (PreTrainedTokenizerFast, "PreTrainedTokenizerFast", lambda: pipe.tokenizer),
        ]
        for cls, name, make in fakes:
            monkeypatch.setattr(cls, "from_pretrained", self._record(name, make))

        def pipeline_from_pretrained(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(("HunyuanVideoFramepackPipeline", args, kwargs))
            return HunyuanVideoFramepackPipeline(
                text_encoder=pipe.text_encoder, tokenizer=kwargs["tokenizer"], vae=pipe.vae,
                scheduler=pipe.scheduler, text_encoder_2=pipe.text_encoder_2, tokenizer_2=pipe.tokenizer_2,
                transformer=kwargs["transformer"], image_encoder=kwargs["image_encoder"],
                feature_extractor=kwargs["feature_extractor"],
            )

        monkeypatch.setattr(HunyuanVideoFramepackPipeline, "from_pretrained", pipeline_from_pretrained)

    def _record(self, name: str, make: Any) -> Any:
        def from_pretrained(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            return make()

        return from_pretrained


def test_real_preset_loads_like_the_diffusers_docs(tmp_path: Path, tiny_model: LoadedModel,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rec = Recorder(tiny_model)
    rec.install(monkeypatch)
    model = load_model(settings(tmp_path, model="framepack"))
    calls = {name: (args, kwargs) for name, args, kwargs in rec.calls}
    assert calls["HunyuanVideoFramepackTransformer3DModel"] == (
        ("lllyasviel/FramePackI2V_HY",), {"torch_dtype": torch.bfloat16})
    assert calls["SiglipImageProcessor"] == (
        ("lllyasviel/flux_redux_bfl",), {"subfolder": "feature_extractor"})
    assert calls["SiglipVisionModel"] == (
        ("lllyasviel/flux_redux_bfl",), {"subfolder": "image_encoder", "torch_dtype": torch.float16})
    # The Llama tokenizer by the generic fast class: its ByteLevel pre-tokenizer survives transformers 5.
    assert calls["PreTrainedTokenizerFast"] == (
        ("hunyuanvideo-community/HunyuanVideo",), {"subfolder": "tokenizer", "padding_side": "right"})
    args, kwargs = calls["HunyuanVideoFramepackPipeline"]
    assert args == ("hunyuanvideo-community/HunyuanVideo",)
    assert kwargs["torch_dtype"] == torch.float16
    assert set(kwargs) == {"transformer", "feature_extractor", "image_encoder", "tokenizer", "torch_dtype"}
    assert model.preset == "framepack" and not model.is_tiny
    assert model.transformer_mode == "reverse" and model.default_resolution == 640
    assert model.dtype == torch.bfloat16 and model.placement == "cpu"


def test_f1_preset_and_swapping_transformers(tmp_path: Path, tiny_model: LoadedModel,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rec = Recorder(tiny_model)
    rec.install(monkeypatch)
    model = load_model(settings(tmp_path, model="framepack-f1", transformer_f1_repo="/mirror/f1"))
    transformer_calls = [a for n, a, _ in rec.calls if n == "HunyuanVideoFramepackTransformer3DModel"]
    assert transformer_calls == [("/mirror/f1",)]
    assert model.transformer_mode == "forward"

    model.use_sampling_mode("forward")  # already loaded: nothing happens
    assert len(rec.calls) == 5
    model.use_sampling_mode("reverse")
    transformer_calls = [a for n, a, _ in rec.calls if n == "HunyuanVideoFramepackTransformer3DModel"]
    assert transformer_calls == [("/mirror/f1",), ("lllyasviel/FramePackI2V_HY",)]
    assert model.transformer_mode == "reverse" and model.preset == "framepack"
    assert model.pipe.transformer is tiny_model.pipe.transformer
    assert model.pipe.config.transformer[1] == "HunyuanVideoFramepackTransformer3DModel"


def test_tiny_serves_both_modes_without_loading(tiny_model: LoadedModel) -> None:
    before = tiny_model.pipe.transformer
    tiny_model.use_sampling_mode("forward")
    tiny_model.use_sampling_mode("reverse")
    assert tiny_model.pipe.transformer is before
