from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from framepack_api.api.app import create_app
from framepack_api.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", model="tiny", workers=0, max_upload_bytes=2_000_000,
                    max_image_pixels=4096 * 4096, max_resolution=640)


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient]:
    """The real app on a real SQLite file, driven in-process (no worker: jobs stay pending)."""
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def make_client(tmp_path: Path) -> Callable[..., TestClient]:
    """An in-process app with no worker (jobs stay pending), with settings overridden."""

    def make(**overrides: object) -> TestClient:
        settings = Settings(**{"model": "tiny", "data_dir": tmp_path, "_env_file": None, **overrides})  # type: ignore[arg-type]
        return TestClient(create_app(settings))

    return make
