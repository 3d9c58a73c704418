"""SIGTERM and SIGINT to `serve` stop every worker before `serve` exits (issue 11 item 9): each worker
gives its job back (pending, the attempt not counted: test_restart_with_pending shows such jobs run
after a restart), and no worker process outlives the server."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
from pathlib import Path

import pytest

from support.server import Server

LONG = {"steps": 40, "video_length": 2, "latent_window_size": 3, "resolution": 128}


def processes_of(data_dir: Path) -> list[int]:
    """Every live process started with this data directory: the server and any worker of it."""
    wanted = f"FRAMEPACK_API_DATA_DIR={data_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if wanted in (entry / "environ").read_bytes().split(b"\0"):
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(entry.name))
    return found


def job_row(data_dir: Path, job_id: str) -> tuple[str, int, str, str | None]:
    with sqlite3.connect(data_dir / "framepack-api.db") as db:
        row = db.execute("SELECT status, attempt, message, worker_id FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return row[0], int(row[1]), row[2], row[3]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_serve_stops_its_workers_and_requeues_their_job(tmp_path: Path, signum: int) -> None:
    data = tmp_path / "data"
    server = Server(data, workers=2).start()
    try:
        job_id = server.submit(**LONG)
        server.wait_for(job_id, ("processing",))
        workers = server.worker_pids()
        assert len(workers) == 2 and set(workers) <= set(processes_of(data))
        assert server.proc is not None
        server.proc.send_signal(signum)
        server.proc.wait(timeout=90)
        assert server.proc.returncode == -signum  # it still ends by the signal it was sent
        assert processes_of(data) == [], "a worker outlived serve"
        status, attempt, message, worker_id = job_row(data, job_id)
        assert (status, attempt, worker_id) == ("pending", 0, None)
        assert message == "requeued: its worker shut down"
        assert "returned to the queue for shutdown" in server.log(tail=None)
    finally:
        server.stop()
