"""The RoPE batch on POST /api/generate-image: refused ranges (in-process), and a real server end to end."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from framepack_api.media.png import read_png_parameters

from .conftest import b64_png
from support.server import Server

SMALL: dict[str, Any] = {"prompt": "a cat", "steps": 1, "width": 64, "height": 64}


@pytest.mark.parametrize(("rope", "extra", "loc"), [
    ({"start": 5, "end": 3}, {}, ["body", "rope_batch", "end"]),
    ({"start": 60, "count": 6}, {}, ["body", "rope_batch", "count"]),
    ({"start": 0, "count": 65}, {}, ["body", "rope_batch", "count"]),
    ({"start": 1, "end": 9, "step": 0}, {}, ["body", "rope_batch", "step"]),
    ({"indices": [3, 3]}, {}, ["body", "rope_batch", "indices"]),
    ({"indices": []}, {}, ["body", "rope_batch", "indices"]),
    ({"indices": [65]}, {}, ["body", "rope_batch", "indices", 0]),
    ({"indices": [True]}, {}, ["body", "rope_batch", "indices", 0]),
    ({"start": 1}, {}, ["body", "rope_batch"]),  # neither end nor count
    ({"start": 1, "end": 4, "count": 2}, {}, ["body", "rope_batch"]),  # both
    ({"indices": [1], "start": 1, "count": 1}, {}, ["body", "rope_batch"]),
    ({"start": 1, "end": 4, "stride": 1}, {}, ["body", "rope_batch", "stride"]),
    ({"start": 1, "end": 4}, {"rope_batch_size": 9}, ["body", "rope_batch_size"]),
])
def test_bad_rope_batches_are_422_naming_the_field(client: TestClient, rope: dict[str, Any],
                                                   extra: dict[str, Any], loc: list[Any]) -> None:
    r = client.post("/api/generate-image", json={**SMALL, "rope_batch": rope, **extra})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == loc
    assert client.get("/queue").json()["queue"] == []


def test_rope_batch_with_target_index_is_422_naming_both(client: TestClient) -> None:
    r = client.post("/api/generate-image", json={**SMALL, "rope_batch": {"start": 1, "count": 2}, "target_index": 3})
    assert r.status_code == 422
    message = str(r.json()["detail"])
    assert "target_index" in message and "rope_batch" in message


def test_rope_batch_is_stored_and_listed_per_index(client: TestClient) -> None:
    r = client.post("/api/generate-image", json={**SMALL, "seed": 3, "rope_batch": {"start": 2, "end": 9, "step": 3}})
    assert r.status_code == 200, r.text
    job = client.get(f"/status/{r.json()['job_id']}").json()
    assert job["params"]["rope_batch"]["start"] == 2 and job["params"]["rope_batch_size"] == 4  # seed 002's default
    progress = job["batch_progress"]
    assert progress["total"] == 3 and progress["passes"] == 1
    assert [(i["index"], i["target_index"], i["status"]) for i in progress["items"]] == [
        (0, 2, "pending"), (1, 5, "pending"), (2, 8, "pending")]


def test_rope_batch_size_counts_against_the_memory_budget(make_client: Callable[..., TestClient]) -> None:
    # 64×64 on the real model's sizes: one image (6 MB) fits 0.01 GB, two sampled together do not.
    body = {**SMALL, "rope_batch": {"start": 1, "count": 4}}
    with make_client(job_memory_budget_gb=0.01, model="framepack") as api:
        refused = api.post("/api/generate-image", json={**body, "rope_batch_size": 2})
        assert refused.status_code == 422, refused.text
        [detail] = refused.json()["detail"]
        assert detail["loc"] == ["body", "rope_batch_size"] and "2 image(s) of 64×64" in detail["msg"]
        assert api.post("/api/generate-image", json={**body, "rope_batch_size": 1}).status_code == 200


def png_pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.int16)


def test_rope_batch_end_to_end(server: Server) -> None:
    body = {**SMALL, "steps": 2, "seed": 8, "input_image": b64_png((64, 64))}
    r = httpx.post(f"{server.url}/api/generate-image", timeout=30,
                   json={**body, "rope_batch": {"indices": [7, 2, 4]}, "rope_batch_size": 2})
    assert r.status_code == 200, r.text
    job = r.json()["job_id"]
    singles = {t: httpx.post(f"{server.url}/api/generate-image", json={**body, "target_index": t}, timeout=30)
               .json()["job_id"] for t in (2, 4, 7)}
    status = server.wait_for(job)
    assert status["status"] == "completed", status
    assert [(i["index"], i["target_index"], i["seed"], i["status"]) for i in status["batch_progress"]["items"]] == [
        (0, 2, 8, "completed"), (1, 4, 8, "completed"), (2, 7, 8, "completed")]

    archive = httpx.get(f"{server.url}/result/{job}", timeout=10)
    assert archive.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.content)) as z:
        assert sorted(z.namelist()) == ["image_000.png", "image_001.png", "image_002.png"]
    for index, target in enumerate((2, 4, 7)):
        made = httpx.get(f"{server.url}/result/{job}/{index}", timeout=10)
        assert made.headers["content-type"] == "image/png"
        meta = read_png_parameters(made.content)
        assert meta["settings"]["target_index"] == target and meta["seed"] == 8
        assert server.wait_for(singles[target])["status"] == "completed"
        alone = httpx.get(f"{server.url}/result/{singles[target]}", timeout=10)
        assert np.abs(png_pixels(made.content) - png_pixels(alone.content)).max() <= 1
    assert httpx.get(f"{server.url}/result/{job}/3", timeout=10).status_code == 404
