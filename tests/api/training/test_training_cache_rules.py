"""Cache rules of the training service, in-process with no worker (jobs stay pending)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

from framepack_api.jobs.store import JobStore

SERVICE = "/api/video-generation"


def store_of(client: TestClient) -> JobStore:
    store: JobStore = client.app.state.framepack.store  # type: ignore[attr-defined]
    return store


def only_job_id(client: TestClient) -> str:
    [job] = store_of(client).list_jobs()
    return job.id


def test_seed_defaults_four_seconds_1280x720_bucketed(make_client: Callable[..., TestClient],
                                                     tmp_path: Path) -> None:
    # The real model's sizing; the tiny model's cap is in tests/api/test_tiny_model_caps.py.
    with make_client(model="framepack") as client:
        body = client.post(f"{SERVICE}/generate", json={"run_id": 7, "drill_text": "butt kicks"}).json()
        assert body == {"run_id": 7, "status": "pending", "video_url": None}
        job = store_of(client).get(only_job_id(client))
    assert job.params["video_length"] == 4.0 and job.params["sampling_mode"] == "reverse"
    assert job.params["resolution"] == 960  # sqrt(1280*720), under the default MAX_RESOLUTION
    assert job.params["prompt"].endswith(": butt kicks")
    start = Image.open(tmp_path / "files" / job.inputs["image"])
    assert start.size == (1248, 720)  # the 960 bucket nearest 16:9, neutral grey
    assert start.getpixel((0, 0)) == (128, 128, 128)


def test_expired_entries_make_a_new_video(make_client: Callable[..., TestClient]) -> None:
    with make_client(training_cache_ttl_seconds=0.3) as client:
        client.post(f"{SERVICE}/generate", json={"run_id": "run-a", "drill_text": "skips"})
        first = only_job_id(client)
        assert client.get(f"{SERVICE}/status/run-a").json()["run_id"] == "run-a"  # strings stay strings
        time.sleep(0.4)
        assert client.get(f"{SERVICE}/status/run-a").status_code == 404
        assert store_of(client).list_jobs() == []  # the expired job and its row went with it
        client.post(f"{SERVICE}/generate", json={"run_id": "run-a", "drill_text": "skips"})
        assert only_job_id(client) != first


def test_a_failed_video_is_made_again(make_client: Callable[..., TestClient]) -> None:
    with make_client() as client:
        client.post(f"{SERVICE}/generate", json={"run_id": 3, "drill_text": "bounds"})
        store = store_of(client)
        claimed = store.claim("test-worker")
        assert claimed is not None
        store.fail(claimed, "RuntimeError: out of memory")
        status = client.get(f"{SERVICE}/status/3").json()
        assert status == {"run_id": 3, "status": "failed", "video_url": None, "error": "RuntimeError: out of memory"}
        again = client.post(f"{SERVICE}/generate", json={"run_id": 3, "drill_text": "bounds"}).json()
        assert again["status"] == "pending"
        assert only_job_id(client) != claimed.id


def test_refusals(make_client: Callable[..., TestClient]) -> None:
    with make_client() as client:
        assert client.post(f"{SERVICE}/generate", json={"run_id": 1}).status_code == 422
        assert client.post(f"{SERVICE}/generate", json={"run_id": "a/b", "drill_text": "x"}).status_code == 422
        assert client.post(f"{SERVICE}/generate", json={"run_id": 1, "drill_text": ""}).status_code == 422
        assert client.get(f"{SERVICE}/status/404").json() == {"detail": "no video for run 404"}
        client.post(f"{SERVICE}/generate", json={"run_id": 5, "drill_text": "x"})
        assert client.get(f"{SERVICE}/video/5").status_code == 409  # not made yet
