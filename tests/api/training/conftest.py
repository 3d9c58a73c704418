"""Fixtures for the training-video service: a real server (Basic auth on, like seed 004's gateway)
and an in-process app without workers for the cache rules."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from _servers import QUICK, Server, shared
from framepack_api.api.app import create_app
from framepack_api.settings import Settings

BASIC = ("xebio", "20251001")


@pytest.fixture(scope="session")
def training_server() -> Server:
    return shared("training", auth=BASIC, env={
        "FRAMEPACK_API_BASIC_AUTH_USERS": ":".join(BASIC),
        "FRAMEPACK_API_TRAINING_VIDEO_SECONDS": "0.5",
        "FRAMEPACK_API_TRAINING_PARAMS": json.dumps(QUICK),
    })


@pytest.fixture
def http(training_server: Server) -> Iterator[httpx.Client]:
    with training_server.http() as client:
        yield client


@pytest.fixture
def make_client(tmp_path: Path) -> Callable[..., TestClient]:
    """An in-process app with no worker (jobs stay pending), with settings overridden."""

    def make(**overrides: object) -> TestClient:
        settings = Settings(model="tiny", data_dir=tmp_path, _env_file=None, **overrides)  # type: ignore[arg-type]
        return TestClient(create_app(settings))

    return make
