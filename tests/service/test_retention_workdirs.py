"""kill -9 of a worker mid-job leaves its attempt's work directory behind; the reaper removes it."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from support.server import Server

LONG = {"steps": 30, "video_length": 2, "latent_window_size": 3, "resolution": 128}


def eventually(condition: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_work_dir_of_a_killed_attempt_is_removed(tmp_path: Path) -> None:
    # One attempt only, so that no later attempt of the job writes a work directory of its own.
    server = Server(tmp_path / "data", workers=1, env={"FRAMEPACK_API_MAX_ATTEMPTS": "1"}).start()
    try:
        job_id = server.submit(**LONG)
        server.wait_for(job_id, ("processing",))
        work = tmp_path / "data" / "files" / "work" / f"{job_id}-1"
        eventually(work.is_dir, "the attempt never made its work directory")
        os.kill(server.worker_pids()[0], signal.SIGKILL)
        final = server.wait_for(job_id, timeout=90)
        assert final["status"] == "failed" and "no attempts left" in final["error"]
        eventually(lambda: not work.exists(), f"{work} outlived its killed attempt")
    finally:
        server.stop()
