"""Retention as a client sees it, applied by the app's own periodic task (no fake clock): a finished
job's download answers 410 once its files are gone, while its status stays; later its row goes too."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient
from PIL import Image

from framepack_api.api.app import create_app
from framepack_api.jobs.db import create_engine
from framepack_api.jobs.store import JobStore
from framepack_api.settings import Settings
from framepack_api.storage import LocalStorage

MP4 = b"\x00\x00\x00\x18ftypmp42 published by the worker"


def settings_for(db_url: str, data_dir: Path, **retention: Any) -> Settings:
    return Settings(model="tiny", data_dir=data_dir, database_url=db_url, max_resolution=64,  # type: ignore[call-arg]
                    default_resolution=64, min_free_disk_mb=1, retention_interval_seconds=0.2,
                    retention_events_seconds=0, _env_file=None, **retention)


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (96, 64), (10, 200, 10)).save(out, format="PNG")
    return out.getvalue()


def run_like_a_worker(settings: Settings, job_id: str) -> str:
    """Claim, publish and complete through the store and storage calls a worker makes."""
    engine = create_engine(settings.resolved_database_url)
    try:
        store, storage = JobStore(engine), LocalStorage(settings.storage_dir)
        job = store.claim("w1")
        assert job is not None and job.id == job_id
        produced = storage.work_dir(job.id, job.attempt) / "video.mp4"
        produced.write_bytes(MP4)
        published = storage.stage_result(job.id, job.attempt, {"video": produced})
        assert store.complete(job, {**published, "info": {}}, seed=7)
        return published["video"]
    finally:
        engine.dispose()


def wait_for(check: Callable[[], httpx.Response | Any], until: Callable[[Any], bool], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if until(value):
            return value
        assert time.monotonic() < deadline, f"condition not reached: {getattr(value, 'text', value)}"
        time.sleep(0.1)


def racing_get(client: TestClient, url: str) -> Any:
    """A GET that may overlap the retention round removing the very file it serves: the file is
    then gone between the route's check and the read (a known gap: the download fails instead of
    answering 410). The next GET sees the expired row, which is what these tests are about."""
    try:
        return client.get(url)
    except FileNotFoundError:
        return None


def test_downloads_answer_410_after_retention_then_the_job_is_gone(db_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    settings = settings_for(db_url, data_dir, retention_files_seconds=1, retention_jobs_seconds=0)
    with TestClient(create_app(settings)) as client:
        native = client.post("/generate", files={"image": ("a.png", png(), "image/png")},
                             data={"prompt": "kept a second"}).json()["job_id"]
        video = run_like_a_worker(settings, native)
        openai_id = client.post("/v1/videos", json={"prompt": "also"}).json()["id"]
        run_like_a_worker(settings, openai_id)
        assert (settings.storage_dir / video).read_bytes() == MP4

        expired = wait_for(lambda: racing_get(client, f"/result/{native}"),
                           lambda r: r is not None and r.status_code != 200)
        assert expired.status_code == 410, expired.text
        assert expired.json() == {"detail": f"the files of job {native} were removed by the retention policy"}
        assert not (settings.storage_dir / video).exists()
        assert not (settings.storage_dir / "inputs" / native).exists()
        status = client.get(f"/status/{native}").json()
        assert status["status"] == "completed" and status["seed"] == 7 and status["result_url"] is None
        assert client.get(f"/thumbnail/{native}").status_code == 410
        content = wait_for(lambda: racing_get(client, f"/v1/videos/{openai_id}/content"),
                           lambda r: r is not None and r.status_code != 200)
        assert content.status_code == 404 and content.json()["error"]["code"] == "video_expired"
        assert client.get(f"/v1/videos/{openai_id}").json()["status"] == "completed"

    # Rows (with their events) go after their own, longer, limit: here 2 s, on the next start.
    settings = settings_for(db_url, data_dir, retention_files_seconds=1, retention_jobs_seconds=2)
    with TestClient(create_app(settings)) as client:
        gone = wait_for(lambda: client.get(f"/status/{native}"), lambda r: r.status_code == 404)
        assert gone.json() == {"detail": f"job {native} not found"}
        # The /v1 job finished a little later than the native one, so its 2 s may run out a round later.
        video = wait_for(lambda: client.get(f"/v1/videos/{openai_id}"), lambda r: r.status_code == 404)
        assert video.json()["error"]["code"] == "video_not_found"
        assert client.get("/v1/videos").json()["data"] == []
        assert client.get(f"/events/{native}").status_code == 404
