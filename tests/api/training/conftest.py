"""Fixtures for the training-video service: a real server (Basic auth on, like seed 004's gateway)
and an in-process app without workers for the cache rules."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from _servers import QUICK, Server, shared

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
