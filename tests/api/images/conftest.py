"""Fixtures for the image endpoints: an in-process app (no worker) and one real server per module."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from safetensors.torch import save_file

from framepack_api.api.app import create_app
from framepack_api.settings import Settings

from support.server import Server


def b64_png(size: tuple[int, int] = (96, 64), color: tuple[int, int, int] = (200, 40, 40),
            mode: str = "RGB") -> str:
    img = Image.new(mode, size, color if mode == "RGB" else color[0])
    for x in range(0, size[0], 3):  # some structure, so that different images encode differently
        img.putpixel((x, x % size[1]), (x % 256, 90, 200) if mode == "RGB" else 255)
    out = io.BytesIO()
    img.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def write_lora(path: Path) -> None:
    """A small diffusers-format LoRA for the tiny transformer (its first attention's query)."""
    g = torch.Generator().manual_seed(1)
    save_file({"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": torch.randn(2, 20, generator=g),
               "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": torch.randn(20, 2, generator=g)},
              str(path))


@pytest.fixture
def lora_dir(tmp_path: Path) -> Path:
    root = tmp_path / "loras"
    root.mkdir()
    write_lora(root / "style.safetensors")
    return root


@pytest.fixture
def image_settings(tmp_path: Path, lora_dir: Path) -> Settings:
    return Settings(model="tiny", data_dir=tmp_path / "data", workers=0, lora_dir=lora_dir, image_max_side=1280,
                    max_upload_bytes=200_000, _env_file=None)  # type: ignore[call-arg]


@pytest.fixture
def client(image_settings: Settings) -> Iterator[TestClient]:
    """The real app on a real SQLite file, in-process, with no worker: jobs stay pending."""
    with TestClient(create_app(image_settings)) as c:
        yield c


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("images-server")
    (root / "loras").mkdir()
    write_lora(root / "loras" / "style.safetensors")
    srv = Server(root / "data", workers=1, env={"FRAMEPACK_API_LORA_DIR": str(root / "loras")}).start()
    try:
        yield srv
    finally:
        srv.stop()
