"""Publishing is fenced (issue 11 item 2): a result is written under its attempt's own directory and
served only once the fenced completion records its paths in the row; a losing attempt's files are
removed and never replace the winner's. The served MP4's embedded seed is the seed /status reports."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx

from framepack_api.backends.base import RunContext
from framepack_api.backends.registry import create_backend
from framepack_api.jobs.db import upgrade
from framepack_api.jobs.store import JobStore, NewJob
from framepack_api.media.video import read_mp4_info
from framepack_api.params import JobType, VideoParams
from framepack_api.settings import Settings
from framepack_api.worker.lease import Lease
from framepack_api.worker.runner import Worker

from support.server import Server, png_bytes

LONG = {"steps": 30, "video_length": 2, "latent_window_size": 3, "resolution": 128, "seed": -1}


def embedded_seed(path: Path) -> int:
    return int(json.loads(read_mp4_info(path)["metadata"]["comment"])["seed"])


def test_a_loser_finishing_after_the_winner_never_replaces_the_published_result(tmp_path: Path) -> None:
    """The window of the report, made deterministic in one process on the real pipeline and a real
    SQLite file: attempt 1 has its video in hand when its lease runs out; attempt 2 runs and completes;
    then attempt 1 publishes."""
    settings = Settings(model="tiny", device="cpu", data_dir=tmp_path / "data", default_resolution=64,
                        _env_file=None)  # type: ignore[call-arg]
    backend = create_backend(settings)
    loser, winner = Worker(settings, create_backend), Worker(settings, create_backend)
    upgrade(loser.engine)
    params = VideoParams(video_length=0.3, latent_window_size=2, steps=1, resolution=64, seed=-1)
    image = loser.storage.write_input("job-1", "image.png", png_bytes())
    loser.store.submit(NewJob(type=JobType.video, params=params.model_dump(), inputs={"image": image}, id="job-1"))

    first = loser.store.claim(loser.id)
    assert first is not None and first.attempt == 1
    ctx = RunContext(workdir=loser.storage.work_dir(first.id, first.attempt))
    late_output = backend.run(first.type, first.params, {"image": loser.storage.resolve(image)}, ctx)

    an_hour_later = JobStore(loser.engine, clock=lambda: time.time() + 3600)
    assert an_hour_later.reap() == ["job-1"]
    second = winner.store.claim(winner.id)
    assert second is not None and second.attempt == 2
    winner.run_one(backend, second)
    done = winner.store.get("job-1")
    assert done.status.value == "completed" and done.result is not None

    published = loser.publish(first, late_output, Lease(loser.store, first, 1.0, threading.Event()))
    assert published is False

    row = winner.store.get("job-1")
    assert row.result == done.result and row.seed == done.seed
    assert row.seed != late_output.seed  # two random draws of 2**32
    served = loser.storage.resolve(row.result["video"])
    assert embedded_seed(served) == row.seed
    assert served.parent == loser.storage.output_dir("job-1") / "2"
    # The loser's staged files are gone; only the winner's attempt directory is left.
    assert sorted(p.name for p in loser.storage.output_dir("job-1").iterdir()) == ["2"]
    loser.engine.dispose()
    winner.engine.dispose()


def _busy_worker(server: Server, job_id: str) -> int:
    """The worker running the job (its row says so just after the claim is visible)."""
    health = server.wait_until(lambda h: any(w["current_job_id"] == job_id for w in h["workers"]), timeout=60)
    return next(int(w["pid"]) for w in health["workers"] if w["current_job_id"] == job_id)


def test_a_worker_paused_past_its_lease_does_not_publish_over_the_winner(tmp_path: Path) -> None:
    """SIGSTOP a real worker mid-job until another has completed the job, then SIGCONT it."""
    server = Server(tmp_path / "data", workers=2).start()
    paused: int | None = None
    try:
        job_id = server.submit(**LONG)
        server.wait_for(job_id, ("processing",))
        paused = _busy_worker(server, job_id)
        os.kill(paused, signal.SIGSTOP)

        final = server.wait_for(job_id, ("completed", "failed"), timeout=180)
        assert final["status"] == "completed" and final["attempt"] == 2, final
        os.kill(paused, signal.SIGCONT)
        # Resumed, the paused worker finds its lease gone, drops its attempt and goes idle.
        server.wait_until(lambda h: any(w["pid"] == paused and w["state"] == "idle" for w in h["workers"]),
                          timeout=120)
        paused = None

        video = tmp_path / "served.mp4"
        video.write_bytes(httpx.get(f"{server.url}/result/{job_id}", timeout=30).content)
        status = httpx.get(f"{server.url}/status/{job_id}", timeout=10).json()
        assert embedded_seed(video) == status["seed"] == final["seed"]
        files = tmp_path / "data" / "files"
        assert sorted(p.name for p in (files / "outputs" / job_id).iterdir()) == ["2"]
        assert not (files / "work" / f"{job_id}-1").exists()
        assert "lease lost" in server.log(tail=None)
    finally:
        if paused is not None:
            os.kill(paused, signal.SIGCONT)
        server.stop()
