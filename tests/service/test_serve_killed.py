"""kill -9 of `serve` itself: its worker finishes the job in hand, takes no new one, and exits;
a restarted server runs what was still queued. Nothing accepted is lost."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx

from support.server import Server


def test_kill_9_of_serve_loses_no_job(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = Server(data, workers=1).start()
    running = first.submit(steps=20, video_length=2, latent_window_size=3, resolution=128)
    waiting = first.submit(seed=11)
    first.wait_for(running, ("processing",))
    [worker_pid] = first.worker_pids()
    assert first.proc is not None
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait()

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and _alive(worker_pid):
        time.sleep(0.2)
    assert not _alive(worker_pid), "the orphaned worker kept running"

    second = Server(data, workers=1).start()
    try:
        done = second.wait_for(running)
        assert done["status"] == "completed" and done["attempt"] == 1  # finished by the orphan, once
        later = second.wait_for(waiting)
        assert later["status"] == "completed" and later["seed"] == 11
        assert httpx.get(f"{second.url}/result/{waiting}").status_code == 200
    finally:
        second.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
