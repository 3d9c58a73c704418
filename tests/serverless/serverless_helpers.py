"""Helpers shared by the serverless tests: parameters, event builders, response readers."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from framepack_api.media.video import read_mp4_info
from framepack_api.params import frame_count, total_sections

# One section of a 2-latent window, one step: about a second per invocation on the tiny model.
FAST: dict[str, Any] = {"prompt": "a test", "seed": 7, "video_length": 0.2, "steps": 1,
                        "latent_window_size": 2, "resolution": 64, "use_teacache": False}
EXPECTED_FRAMES = frame_count(total_sections(0.2, 2), 2)


def png_b64(width: int = 96, height: int = 64, seed: int = 1) -> str:
    rng = np.random.default_rng(seed)
    img = Image.fromarray((rng.random((height, width, 3)) * 255).astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def rest_v1_event(params: dict[str, Any], *, base64_body: bool = False) -> dict[str, Any]:
    body = json.dumps(params)
    if base64_body:
        body = base64.b64encode(body.encode()).decode("ascii")
    return {
        "resource": "/generate", "path": "/generate", "httpMethod": "POST",
        "headers": {"Content-Type": "application/json"}, "queryStringParameters": None,
        "requestContext": {"resourcePath": "/generate", "httpMethod": "POST", "stage": "prod"},
        "body": body, "isBase64Encoded": base64_body,
    }


def http_v2_event(params: dict[str, Any], *, base64_body: bool = False) -> dict[str, Any]:
    body = json.dumps(params)
    if base64_body:
        body = base64.b64encode(body.encode()).decode("ascii")
    return {
        "version": "2.0", "routeKey": "POST /generate", "rawPath": "/generate", "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {"http": {"method": "POST", "path": "/generate"}, "stage": "$default"},
        "body": body, "isBase64Encoded": base64_body,
    }


def body_of(response: dict[str, Any]) -> dict[str, Any]:
    """The JSON body of a proxy response, or a direct response itself."""
    if "statusCode" in response:
        assert response["headers"]["Content-Type"] == "application/json"
        return dict(json.loads(response["body"]))
    return response


def mp4_frames(data: bytes, tmp_path: Path) -> int:
    path = tmp_path / "decoded.mp4"
    path.write_bytes(data)
    return int(read_mp4_info(path)["frames"])


@dataclass(frozen=True)
class ServerlessDirs:
    data: Path
    tmp: Path


@dataclass
class PutReceiver:
    """An HTTP server on 127.0.0.1 that records PUTs and answers ``status``: a stand-in presigned URL."""

    base_url: str
    status: int = 200
    received: list[dict[str, Any]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base_url + path
