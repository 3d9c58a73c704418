"""A job that kills its worker is not retried into the same death (issue 11 item 8): when a worker
dies by a signal mid-job, `serve` records why on the job at once and requeues it; after the second
such death the job fails with that reason instead of taking down a third worker."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import httpx

from support.server import Server

LONG = {"steps": 40, "video_length": 2, "latent_window_size": 3, "resolution": 128}
OOM = "worker killed by signal 9, likely out of memory"


def _holder(server: Server, job_id: str, not_pid: int | None = None) -> int | None:
    """The live worker running the job now (a killed worker's row lingers until it goes stale)."""
    health = httpx.get(f"{server.url}/health", timeout=10).json()
    for w in health["workers"]:
        if w["current_job_id"] == job_id and w["pid"] != not_pid:
            return int(w["pid"])
    return None


def _wait(check: object, timeout: float = 180.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()  # type: ignore[operator]
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {check}")


def test_a_worker_killed_twice_on_a_job_fails_it_with_the_reason(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = Server(data, workers=1, env={"FRAMEPACK_API_MAX_ATTEMPTS": "5"}).start()
    try:
        job_id = server.submit(**LONG)
        server.wait_for(job_id, ("processing",))
        first = int(_wait(lambda: _holder(server, job_id)))  # type: ignore[arg-type]
        os.kill(first, signal.SIGKILL)

        # Requeued at once with the reason (not after the lease), then taken by the restarted worker.
        second = int(_wait(lambda: _holder(server, job_id, not_pid=first)))  # type: ignore[arg-type]
        running = httpx.get(f"{server.url}/status/{job_id}", timeout=10).json()
        assert running["attempt"] == 2 and running["status"] == "processing"
        os.kill(second, signal.SIGKILL)

        final = server.wait_for(job_id, ("completed", "failed", "cancelled"), timeout=120)
        assert final["status"] == "failed", final
        assert final["error"] == f"{OOM}; not retried: its worker died this way 2 times"
        assert final["attempt"] == 2  # attempts were left (5): the deaths stopped it
        with sqlite3.connect(data / "framepack-api.db") as db:
            deaths = db.execute("SELECT signal_deaths FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
            messages = [json.loads(d).get("message") for (d,) in db.execute(
                "SELECT data FROM job_events WHERE job_id = ? AND kind = 'status' ORDER BY id", (job_id,))]
        assert deaths == 2
        assert f"requeued: {OOM}" in messages
        # A third worker is running, idle: the job did not take it down.
        server.wait_until(lambda h: any(w["state"] == "idle" and w["pid"] not in (first, second)
                                        for w in h["workers"]), timeout=120)
    finally:
        server.stop()
