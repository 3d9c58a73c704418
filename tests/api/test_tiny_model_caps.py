"""On the tiny model every dialect's default request is made at the tiny model's own size limit
(TINY_MAX_RESOLUTION), and the answer says what is made; the real model's sizing is unchanged."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from framepack_api.api.video_requests import local_bucket
from framepack_api.hardware import TINY_MAX_RESOLUTION, capped_image_size
from framepack_api.settings import Settings

from support.server import png_bytes


def job(client: TestClient, job_id: str) -> dict[str, Any]:
    return dict(client.get(f"/status/{job_id}").json())


@pytest.mark.parametrize(("model", "resolution"), [("tiny", TINY_MAX_RESOLUTION), ("framepack", 960)])
def test_openai_default_size_is_made_at_the_models_limit(make_client: Callable[..., TestClient], model: str,
                                                         resolution: int) -> None:
    with make_client(model=model) as client:
        created = client.post("/v1/videos", json={"prompt": "a runner"})  # the SDK's defaults: 4 s, 720x1280
        assert created.status_code == 200, created.text
        body = created.json()
        params = job(client, body["id"])["params"]
    _, bucket_w, bucket_h = local_bucket(720, 1280, resolution)
    assert params["resolution"] == resolution
    assert body["size"] == "720x1280" and body["frame_size"] == f"{bucket_w}x{bucket_h}"
    if model == "tiny":
        assert max(bucket_w, bucket_h) <= 2 * TINY_MAX_RESOLUTION  # a bucket of 128, not of 960


def test_training_service_1280x720_is_capped_on_tiny(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    with make_client() as client:
        r = client.post("/api/video-generation/generate", json={"run_id": 3, "drill_text": "lunges"})
        assert r.status_code == 200, r.text
        [row] = client.get("/queue").json()["queue"]
        status = job(client, row["job_id"])
    assert status["params"]["resolution"] == TINY_MAX_RESOLUTION
    start = next((tmp_path / "files" / "inputs" / row["job_id"]).glob("image*.png"))
    _, bucket_w, bucket_h = local_bucket(1280, 720, TINY_MAX_RESOLUTION)
    assert Image.open(start).size == (bucket_w, bucket_h)


def test_native_resolution_and_image_sizes_are_capped_on_tiny_only(make_client: Callable[..., TestClient]) -> None:
    image = {"image": ("in.png", png_bytes(), "image/png")}
    for model, resolution, size in (("tiny", TINY_MAX_RESOLUTION, (128, 64)), ("framepack", 640, (1216, 704))):
        with make_client(model=model, max_resolution=640) as client:
            video = client.post("/generate", data={"prompt": "p", "resolution": "640"}, files=image)
            assert job(client, video.json()["job_id"])["params"]["resolution"] == resolution
            picture = client.post("/api/generate-image", json={"prompt": "x",
                                                               "input_image": base64.b64encode(png_bytes()).decode()})
            params = job(client, picture.json()["job_id"])["params"]
            assert (params["width"], params["height"]) == size
            over = client.post("/generate", data={"prompt": "p", "resolution": "1024"}, files=image)
            assert over.status_code == 422  # above MAX_RESOLUTION stays an error on either model


def test_capped_image_size_keeps_the_aspect_in_multiples_of_16() -> None:
    tiny = Settings(model="tiny", _env_file=None)  # type: ignore[call-arg]
    real = Settings(model="framepack", _env_file=None)  # type: ignore[call-arg]
    assert capped_image_size(tiny, 1216, 704) == (128, 64)  # longest side 128, the other in 16s (74 -> 64)
    assert capped_image_size(tiny, 704, 1216) == (64, 128)
    assert capped_image_size(tiny, 128, 96) == (128, 96)
    assert capped_image_size(tiny, 2048, 1024) == (128, 64)
    assert capped_image_size(real, 1216, 704) == (1216, 704)
