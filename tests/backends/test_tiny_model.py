"""The tiny model: real classes, deterministic build, save/load round trip, safe concurrent builds."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from diffusers import (
    AutoencoderKLHunyuanVideo,
    FlowMatchEulerDiscreteScheduler,
    HunyuanVideoFramepackPipeline,
    HunyuanVideoFramepackTransformer3DModel,
)
from transformers import CLIPTextModel, CLIPTokenizer, LlamaModel, SiglipVisionModel

from framepack_api.backends.framepack import tiny
from framepack_api.backends.framepack.loader import LoadedModel
from framepack_api.backends.framepack.tiny import (
    FRAMEPACK_CLASS_NAME,
    HUNYUAN_DIR,
    HUNYUAN_MODEL_INDEX,
    MARKER_NAME,
    SIGLIP_DIR,
    TRANSFORMER_DIR,
    build_tiny_model,
    ensure_tiny_model,
    is_current,
)


def test_loaded_tiny_pipeline_is_made_of_the_real_classes(tiny_model: LoadedModel) -> None:
    pipe: Any = tiny_model.pipe  # diffusers registers components dynamically: no static attributes
    assert isinstance(tiny_model.pipe, HunyuanVideoFramepackPipeline)
    expected = {
        "transformer": HunyuanVideoFramepackTransformer3DModel,
        "vae": AutoencoderKLHunyuanVideo,
        "text_encoder": LlamaModel,
        "text_encoder_2": CLIPTextModel,
        "image_encoder": SiglipVisionModel,
        "scheduler": FlowMatchEulerDiscreteScheduler,
        "tokenizer_2": CLIPTokenizer,
    }
    for name, cls in expected.items():
        assert isinstance(getattr(pipe, name), cls), name
    # Constraints the pipeline relies on, after a save/load round trip.
    assert pipe.tokenizer.padding_side == "right"
    assert pipe.text_encoder.config.num_hidden_layers >= 2
    assert pipe.transformer.config.image_proj_dim == pipe.image_encoder.config.hidden_size
    assert pipe.transformer.config.text_embed_dim == pipe.text_encoder.config.hidden_size
    assert pipe.transformer.config.pooled_projection_dim == pipe.text_encoder_2.config.hidden_size
    assert tiny_model.is_tiny and tiny_model.preset == "tiny" and tiny_model.default_resolution == 128
    assert tiny_model.dtype == torch.float32


def test_tiny_model_is_small(tiny_model: LoadedModel) -> None:
    total = sum(p.numel() for name, m in tiny_model.pipe.components.items()
                if isinstance(m, torch.nn.Module) for p in m.parameters())
    assert total < 500_000


def test_tokenizers_encode_any_text(tiny_model: LoadedModel) -> None:
    pipe = tiny_model.pipe
    for text in ["a cat", "日本語のプロンプト", ""]:
        ids = pipe.tokenizer(text, max_length=32, padding="max_length", truncation=True).input_ids
        assert len(ids) == 32 and max(ids) < pipe.text_encoder.config.vocab_size
        ids2 = pipe.tokenizer_2(text, max_length=77, padding="max_length", truncation=True).input_ids
        assert len(ids2) == 77 and max(ids2) < pipe.text_encoder_2.config.vocab_size
    # Right padding: the prompt's tokens come first, padding after.
    mask = pipe.tokenizer("ab", max_length=8, padding="max_length").attention_mask
    assert mask[0] == 1 and mask[-1] == 0


def test_build_is_deterministic(tmp_path: Path) -> None:
    build_tiny_model(tmp_path / "a")
    build_tiny_model(tmp_path / "b")
    a = HunyuanVideoFramepackTransformer3DModel.from_pretrained(tmp_path / "a" / TRANSFORMER_DIR)
    b = HunyuanVideoFramepackTransformer3DModel.from_pretrained(tmp_path / "b" / TRANSFORMER_DIR)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert is_current(tmp_path / "a")


def test_build_does_not_touch_global_rng() -> None:
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    tiny.build_tiny_pipeline()
    assert torch.equal(torch.rand(3), expected)


def test_ensure_builds_once(tmp_path: Path) -> None:
    path = ensure_tiny_model(tmp_path)
    marker = path / MARKER_NAME
    stamp = marker.stat().st_mtime_ns
    assert ensure_tiny_model(tmp_path) == path
    assert marker.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]  # no temp dirs left behind


def test_ensure_rebuilds_when_the_builder_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = ensure_tiny_model(tmp_path)
    (path / "stale-file").write_text("from the old builder")
    monkeypatch.setattr(tiny, "TINY_MODEL_VERSION", tiny.TINY_MODEL_VERSION + 1)
    assert not is_current(path)
    assert ensure_tiny_model(tmp_path) == path
    assert is_current(path) and not (path / "stale-file").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]


def test_ensure_rebuilds_an_incomplete_directory(tmp_path: Path) -> None:
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "model_index.json").write_text("{}")  # a crash before the marker was written
    path = ensure_tiny_model(tmp_path)
    assert is_current(path)
    HunyuanVideoFramepackTransformer3DModel.from_pretrained(path / TRANSFORMER_DIR)


def test_losing_the_rename_race_keeps_the_winner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_build = tiny.build_tiny_model
    winner_marker: list[int] = []

    def build_while_another_process_wins(path: Path) -> None:
        real_build(path)
        # Another process finishes first and renames its complete model into place.
        real_build(tmp_path / "tiny")
        winner_marker.append((tmp_path / "tiny" / MARKER_NAME).stat().st_mtime_ns)

    monkeypatch.setattr(tiny, "build_tiny_model", build_while_another_process_wins)
    path = ensure_tiny_model(tmp_path)
    assert path == tmp_path / "tiny" and is_current(path)
    assert (path / MARKER_NAME).stat().st_mtime_ns == winner_marker[0]  # ours was discarded
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]


def test_concurrent_ensure_calls(tmp_path: Path) -> None:
    results: list[Path] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            results.append(ensure_tiny_model(tmp_path))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == [tmp_path / "tiny"] * 3
    assert is_current(tmp_path / "tiny")
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]
    HunyuanVideoFramepackTransformer3DModel.from_pretrained(tmp_path / "tiny" / TRANSFORMER_DIR)


def test_files_have_the_real_repos_layout_and_class_names(tiny_settings: Any, tiny_model: LoadedModel) -> None:
    root = tiny_settings.models_dir / "tiny"
    hunyuan = root / HUNYUAN_DIR
    assert json.loads((hunyuan / "model_index.json").read_text()) == HUNYUAN_MODEL_INDEX
    for sub in ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "vae", "scheduler"):
        assert (hunyuan / sub).is_dir(), sub
    tokenizer_json = json.loads((hunyuan / "tokenizer" / "tokenizer.json").read_text())
    assert tokenizer_json["model"]["type"] == "BPE"
    assert tokenizer_json["pre_tokenizer"]["type"] == tokenizer_json["decoder"]["type"] == "ByteLevel"
    assert json.loads((hunyuan / "text_encoder" / "config.json").read_text())["architectures"] == ["LlamaModel"]
    assert json.loads((hunyuan / "vae" / "config.json").read_text())["_class_name"] == "AutoencoderKLHunyuanVideo"
    siglip = root / SIGLIP_DIR
    assert json.loads((siglip / "image_encoder" / "config.json").read_text())["architectures"] == [
        "SiglipVisionModel"]
    assert (siglip / "feature_extractor" / "preprocessor_config.json").is_file()
    transformer = json.loads((root / TRANSFORMER_DIR / "config.json").read_text())
    assert transformer["_class_name"] == FRAMEPACK_CLASS_NAME
    assert transformer["has_image_proj"] is True and transformer["has_clean_x_embedder"] is True
