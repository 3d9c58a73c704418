"""Fixtures for the FramePack backend: the real tiny pipeline, built once per test session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from framepack_api.backends.framepack.loader import LoadedModel, load_model
from framepack_api.settings import Settings


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("framepack-data")


@pytest.fixture(scope="session")
def tiny_settings(tiny_data_dir: Path) -> Settings:
    return Settings(model="tiny", data_dir=tiny_data_dir, device="cpu", _env_file=None)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def tiny_model(tiny_settings: Settings) -> LoadedModel:
    return load_model(tiny_settings)


def noise_image(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((height, width, 3)) * 255).astype(np.uint8))


@pytest.fixture
def start_image() -> Image.Image:
    return noise_image(96, 64, seed=1)


@pytest.fixture
def end_image() -> Image.Image:
    return noise_image(96, 64, seed=2)
