"""Fixtures for the remote backend: an origin server (local FramePack) and a forwarder in front of it."""

from __future__ import annotations

import json

import pytest

from _servers import QUICK, Server, shared


@pytest.fixture(scope="session")
def origin() -> Server:
    return shared("local")


@pytest.fixture(scope="session")
def forwarder(origin: Server) -> Server:
    """Runs no model: every /v1/videos and training job is forwarded to ``origin``."""
    return shared("forwarder", env={
        "FRAMEPACK_API_BACKEND": "remote",
        "FRAMEPACK_API_TRAINING_BACKEND": "remote",
        "FRAMEPACK_API_REMOTE_BASE_URL": f"{origin.url}/v1",
        "FRAMEPACK_API_REMOTE_MODEL": "framepack",
        "FRAMEPACK_API_TRAINING_VIDEO_SECONDS": "0.5",
        "FRAMEPACK_API_TRAINING_PARAMS": json.dumps(QUICK),
    })
