"""kill -9 of a worker in the middle of a job: the supervisor restarts it, the reaper requeues the
job when its lease runs out, and the job completes on its second attempt."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from support.server import Server

LONG = {"steps": 30, "video_length": 2, "latent_window_size": 3, "resolution": 128}


def test_kill_9_mid_job_the_job_completes_on_a_restarted_worker(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", workers=1).start()
    try:
        job_id = server.submit(**LONG)
        running = server.wait_for(job_id, ("processing",))
        assert running["attempt"] == 1
        [victim] = server.worker_pids()
        os.kill(victim, signal.SIGKILL)

        final = server.wait_for(job_id, timeout=120)
        assert final["status"] == "completed", final
        assert final["attempt"] == 2
        assert server.wait_until(lambda h: h["workers_alive"] >= 1 and
                                 victim not in [w["pid"] for w in h["workers"]])
        assert "exited with -9; restarting" in server.log(tail=None)
    finally:
        server.stop()


def test_a_job_whose_worker_keeps_dying_fails_after_max_attempts(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", workers=1, env={"FRAMEPACK_API_MAX_ATTEMPTS": "1"}).start()
    try:
        job_id = server.submit(**LONG)
        server.wait_for(job_id, ("processing",))
        os.kill(server.worker_pids()[0], signal.SIGKILL)
        final = server.wait_for(job_id, timeout=60)
        assert final["status"] == "failed" and "no attempts left" in final["error"]
    finally:
        server.stop()
