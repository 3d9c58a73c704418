"""SIGTERM to a busy worker: it stops at the next sampling step and gives its job back."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from support.server import Server


def test_sigterm_requeues_the_running_job_without_spending_an_attempt(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", workers=1).start()
    try:
        job_id = server.submit(steps=40, video_length=2, latent_window_size=3, resolution=128)
        server.wait_for(job_id, ("processing",))
        [worker] = server.worker_pids()
        os.kill(worker, signal.SIGTERM)
        final = server.wait_for(job_id, timeout=120)
        assert final["status"] == "completed", final
        assert final["attempt"] == 1  # the give-back did not count as an attempt
        assert "returned to the queue for shutdown" in server.log(tail=None)
        assert "exited with 0; restarting" in server.log(tail=None)
    finally:
        server.stop()
