"""Several standalone workers on one PostgreSQL database share a queue without double work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from support.server import Server


def test_two_standalone_workers_on_postgresql_share_the_queue(tmp_path: Path, pg_url: str) -> None:
    data = tmp_path / "data"
    api = Server(data, workers=0, env={"FRAMEPACK_API_DATABASE_URL": pg_url}).start()
    env = {**api.env(), "FRAMEPACK_API_WORKERS": "0"}
    workers = [subprocess.Popen([sys.executable, "-m", "framepack_api", "worker"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        api.wait_until(lambda h: h["workers_alive"] == 2, timeout=120)
        ids = [api.submit(seed=i, steps=3) for i in range(6)]
        finals = [api.wait_for(i, timeout=120) for i in ids]
        assert [f["status"] for f in finals] == ["completed"] * 6
        assert all(f["attempt"] == 1 for f in finals)  # nobody ran a job twice
        health = api.wait_until(lambda h: True)
        assert {w["pid"] for w in health["workers"]} == {w.pid for w in workers}
    finally:
        for w in workers:
            os.kill(w.pid, signal.SIGTERM)
        for w in workers:
            w.wait(timeout=30)
        api.stop()
    assert [w.returncode for w in workers] == [0, 0]
