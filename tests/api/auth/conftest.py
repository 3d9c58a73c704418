"""Fixtures for authentication: in-process apps built with the settings a test asks for."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from framepack_api.api.app import create_app
from framepack_api.settings import Settings


@pytest.fixture
def make_client(tmp_path: Path) -> Callable[..., TestClient]:
    def make(**overrides: object) -> TestClient:
        settings = Settings(model="tiny", data_dir=tmp_path, _env_file=None, **overrides)  # type: ignore[arg-type]
        return TestClient(create_app(settings))

    return make
