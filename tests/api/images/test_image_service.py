"""Image jobs end to end on a real `framepack-api serve` (tiny model, one worker), and the queue policy."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from PIL import Image

from framepack_api.jobs.db import create_engine, upgrade
from framepack_api.jobs.store import JobStore, NewJob
from framepack_api.media.png import read_png_parameters
from framepack_api.params import JobType

from .conftest import b64_png
from support.server import Server

SMALL: dict[str, Any] = {"steps": 1, "width": 64, "height": 64}


def post(server: Server, path: str, body: dict[str, Any]) -> str:
    r = httpx.post(f"{server.url}{path}", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return str(r.json()["job_id"])


def finished(server: Server, job_id: str) -> dict[str, Any]:
    status = server.wait_for(job_id)
    assert status["status"] == "completed", status
    return status


def test_generate_image_end_to_end(server: Server) -> None:
    job = post(server, "/api/generate-image", {**SMALL, "width": 80, "prompt": "雪", "seed": 9,
                                               "input_image": b64_png(), "lora_paths": ["style.safetensors"]})
    status = finished(server, job)
    assert status["seed"] == 9
    png = httpx.get(f"{server.url}/result/{job}", timeout=10)
    assert png.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(png.content)) as img:
        assert img.size == (80, 64)
    meta = read_png_parameters(png.content)
    assert meta["prompt"] == "雪" and meta["seed"] == 9
    assert meta["settings"]["loras"] == [{"name": "style.safetensors", "scale": 1.0}]
    assert httpx.get(f"{server.url}/api/image/{job}", timeout=10).content == png.content
    assert httpx.get(f"{server.url}/result/{job}/0", timeout=10).content == png.content


def test_batch_end_to_end(server: Server) -> None:
    job = post(server, "/api/batch-images", {**SMALL, "prompts": ["a", "b", "c"], "batch_size": 2})
    status = finished(server, job)
    progress = status["batch_progress"]
    assert progress["completed"] == 3 and all(i["status"] == "completed" for i in progress["items"])
    archive = httpx.get(f"{server.url}/result/{job}", timeout=10)
    assert archive.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.content)) as z:
        names = sorted(z.namelist())
        seeds = [read_png_parameters(z.read(n))["seed"] for n in names]
    assert names == ["image_000.png", "image_001.png", "image_002.png"]
    assert seeds == status["params"]["seeds"] and len(set(seeds)) == 3
    second = httpx.get(f"{server.url}/result/{job}/1", timeout=10)
    assert read_png_parameters(second.content)["prompt"] == "b"
    assert httpx.get(f"{server.url}/result/{job}/3", timeout=10).status_code == 404


def test_transfer_end_to_end(server: Server) -> None:
    job = post(server, "/api/transfer-image", {**SMALL, "prompt": "p", "target_image": b64_png(),
                                               "source_image": b64_png(color=(0, 90, 0)),
                                               "source_mask": b64_png(mode="L", color=(255, 0, 0))})
    finished(server, job)
    png = httpx.get(f"{server.url}/result/{job}", timeout=10).content
    with Image.open(io.BytesIO(png)) as img:
        assert img.size == (64, 64)
    assert read_png_parameters(png)["settings"]["masks"] == ["source_mask"]


def test_image_job_overtakes_a_waiting_video_job(server: Server) -> None:
    long_video = server.submit(video_length="3", steps="4")  # runs first; the others wait behind it
    waiting_video = server.submit()
    image = post(server, "/api/generate-image", {**SMALL, "prompt": "i"})
    for job in (long_video, waiting_video, image):
        finished(server, job)
    started = {j: httpx.get(f"{server.url}/status/{j}").json()["started_at"] for j in (waiting_video, image)}
    assert started[image] < started[waiting_video]


@pytest.mark.parametrize(("image_delay", "image_first"), [(100.0, True), (400.0, False)])
def test_aging_bounds_how_long_image_jobs_can_overtake(db_url: str, image_delay: float,
                                                       image_first: bool) -> None:
    """Boost 10 points, one point per 30 s of waiting: images overtake videos up to 300 s younger."""
    now = [1000.0]
    engine = create_engine(db_url)
    upgrade(engine)
    store = JobStore(engine, clock=lambda: now[0], type_boost={JobType.image: 10}, aging_seconds=30.0)
    video, _ = store.submit(NewJob(JobType.video, {}, {}))
    now[0] += image_delay
    image, _ = store.submit(NewJob(JobType.image, {}, {}))
    expected = [image.id, video.id] if image_first else [video.id, image.id]
    assert [j.id for j in store.list_pending()] == expected
    assert [store.position(store.get(i)) for i in expected] == [1, 2]
    now[0] += 10_000
    assert store.claim("w").id == expected[0]  # type: ignore[union-attr]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM jobs WHERE status = 'pending'")).scalar_one() == 1
    engine.dispose()
