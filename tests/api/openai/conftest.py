"""Fixtures for the /v1/videos tests: a real server for the SDK, an in-process app for error cases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from openai import OpenAI

from _servers import Server, shared
from framepack_api.api.app import create_app
from framepack_api.settings import Settings


@pytest.fixture(scope="session")
def local_server() -> Server:
    return shared("local")


@pytest.fixture
def sdk(local_server: Server) -> Iterator[OpenAI]:
    client = OpenAI(base_url=f"{local_server.url}/v1", api_key="not-checked", max_retries=0, timeout=30)
    yield client
    client.close()


@pytest.fixture
def app_settings(tmp_path: Path) -> Settings:
    return Settings(model="tiny", data_dir=tmp_path, max_resolution=64, max_upload_bytes=64 * 1024,
                    _env_file=None)  # type: ignore[call-arg]


@pytest.fixture
def client(app_settings: Settings) -> Iterator[TestClient]:
    """The whole app in-process, with no worker: jobs stay queued."""
    with TestClient(create_app(app_settings)) as c:
        yield c
