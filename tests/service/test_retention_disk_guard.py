"""The free-space floor in the worker, with the real tiny FramePack backend: a job running when the
disk falls below the floor fails with a clear error and publishes nothing; below the floor a worker
takes no job. The floor is set above the free space rather than filling the disk."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from framepack_api.api.app import create_app
from framepack_api.backends.base import Backend
from framepack_api.backends.framepack.backend import FramepackBackend
from framepack_api.disk import full_disk_error, is_disk_full
from framepack_api.settings import Settings
from framepack_api.worker.runner import Worker

ABOVE_ANY_DISK_MB = 1e12
FAST = {"prompt": "a test", "video_length": "0.3", "latent_window_size": "2", "steps": "2", "seed": "7"}


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Backend:
    """One tiny pipeline for the module (loading it is the slow part)."""
    settings = Settings(model="tiny", device="cpu", data_dir=tmp_path_factory.mktemp("tiny"),  # type: ignore[call-arg]
                        _env_file=None)
    return FramepackBackend(settings)


def settings_for(db_url: str, data_dir: Path, floor_mb: float) -> Settings:
    return Settings(model="tiny", device="cpu", data_dir=data_dir, database_url=db_url,  # type: ignore[call-arg]
                    default_resolution=64, max_resolution=64, min_free_disk_mb=floor_mb, _env_file=None)


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (96, 64), (30, 120, 200)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    """The API that accepted the job while there was room (floor 1 MB)."""
    with TestClient(create_app(settings_for(db_url, tmp_path / "data", 1))) as client:
        yield client


def submit(api: TestClient) -> str:
    r = api.post("/generate", files={"image": ("a.png", png(), "image/png")}, data=FAST)
    assert r.status_code == 200, r.text
    return str(r.json()["job_id"])


def test_a_running_job_fails_clearly_and_publishes_nothing_below_the_floor(
        api: TestClient, backend: Backend, db_url: str, tmp_path: Path) -> None:
    job_id = submit(api)
    worker = Worker(settings_for(db_url, tmp_path / "data", ABOVE_ANY_DISK_MB), lambda _: backend)
    try:
        job = worker.store.claim(worker.id)  # taken while there was room; the disk fills as it runs
        assert job is not None and job.id == job_id
        worker.run_one(backend, job)
    finally:
        worker.engine.dispose()
    status = api.get(f"/status/{job_id}").json()
    assert status["status"] == "failed", status
    assert status["error"].startswith("disk full: stopped before writing its results: free disk space is")
    assert "FRAMEPACK_API_MIN_FREE_DISK_MB" in status["error"]
    files = tmp_path / "data" / "files"
    assert not (files / "outputs" / job_id).exists()  # nothing published, not even part of it
    assert list((files / "work").iterdir()) == []
    r = api.get(f"/result/{job_id}")
    assert r.status_code == 409 and r.json()["status"] == "failed"


def test_below_the_floor_a_worker_takes_no_job(api: TestClient, backend: Backend, db_url: str,
                                               tmp_path: Path) -> None:
    job_id = submit(api)
    worker = Worker(settings_for(db_url, tmp_path / "data", ABOVE_ANY_DISK_MB), lambda _: backend)
    thread = threading.Thread(target=worker.run_forever, daemon=True)
    thread.start()
    try:
        # "idle" is written in the same loop turn that decided not to claim, after deciding.
        deadline = time.monotonic() + 60
        while not [w for w in worker.store.live_workers(60) if w["id"] == worker.id and w["state"] == "idle"]:
            assert time.monotonic() < deadline, "the worker never went idle"
            time.sleep(0.05)
        status = api.get(f"/status/{job_id}").json()
        assert (status["status"], status["attempt"]) == ("pending", 0)
        health = api.get("/health")
        assert health.status_code == 200  # this API's own floor (1 MB) is met; the worker's is not
    finally:
        worker.stopping.set()
        thread.join(timeout=60)
    assert not thread.is_alive()


def test_a_real_enospc_is_recognised_and_explained() -> None:
    """/dev/full fails every write with ENOSPC: the error a full disk gives, without filling one."""
    with pytest.raises(OSError) as caught, open("/dev/full", "wb", buffering=0) as full:
        full.write(b"x")
    assert is_disk_full(caught.value)
    assert str(full_disk_error(caught.value)) == "not accepting jobs: the disk is full (No space left on device)"
    assert not is_disk_full(PermissionError(13, "Permission denied"))
