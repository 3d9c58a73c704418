"""One worker per GPU, on this CPU machine: the workers of `serve --gpus` and of
`framepack-api worker --gpus` are pinned through their own CUDA_VISIBLE_DEVICES, keep their GPU
across a restart, and say so in /health.

The parent is given CUDA_VISIBLE_DEVICES=0,1 so that both GPUs count as visible wherever the test
runs (here no driver answers; on a one-GPU machine nvidia-smi lists only GPU 0). The tiny model
runs on the CPU either way, which is what each worker records as its device.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from framepack_api.jobs.db import create_engine
from framepack_api.jobs.tables import workers

from support.models import link_tiny_model
from support.server import Server

PINNED = {"CUDA_VISIBLE_DEVICES": "0,1", "FRAMEPACK_API_WORKERS": "auto", "FRAMEPACK_API_GPUS": "0,1"}


def wait_for(check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out after {timeout}s"
        time.sleep(0.2)
    return value


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").partition("=")[::2] for item in raw if b"=" in item)


def _by_pin(health: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Live (idle or busy) workers by the CUDA_VISIBLE_DEVICES they recorded."""
    return {w["cuda_visible_devices"]: w for w in health["workers"] if w["state"] in ("idle", "busy")}


def _pinned_pair(health: dict[str, Any], *, not_pid: int | None = None) -> bool:
    pins = _by_pin(health)
    return sorted(pins) == ["0", "1"] and not_pid not in [w["pid"] for w in pins.values()] and \
        all(Path(f"/proc/{w['pid']}").exists() for w in pins.values())


def test_serve_gpus_pins_one_worker_per_gpu_and_a_restart_keeps_it(tmp_path: Path) -> None:
    server = Server(link_tiny_model(tmp_path / "data"), workers=2, env=PINNED).start()
    try:
        health = server.wait_until(_pinned_pair, timeout=120)
        pins = _by_pin(health)
        for pin, worker in pins.items():
            env = _environ(int(worker["pid"]))
            assert env["CUDA_VISIBLE_DEVICES"] == pin and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
            assert env["FRAMEPACK_API_WORKER_GPU"] == f"cuda:{pin}"
            assert env["FRAMEPACK_API_GPUS"] == ""  # a worker, never another supervisor
            assert worker["device"] == "cpu"  # the tiny model: pinned, but running on the CPU
        assert "2 worker(s): cuda:0, cuda:1" in server.log(tail=None)

        victim = int(pins["1"]["pid"])
        os.kill(victim, signal.SIGKILL)
        health = server.wait_until(lambda h: _pinned_pair(h, not_pid=victim), timeout=120)
        reborn = int(_by_pin(health)["1"]["pid"])
        assert _environ(reborn)["CUDA_VISIBLE_DEVICES"] == "1"
        assert int(_by_pin(health)["0"]["pid"]) == int(pins["0"]["pid"])  # the other one untouched

        job_id = server.submit()
        assert server.wait_for(job_id)["status"] == "completed"
    finally:
        server.stop()


def test_worker_gpus_supervises_one_pinned_worker_per_gpu(tmp_path: Path) -> None:
    """No API here: the worker rows in the database are what is checked."""
    data = link_tiny_model(tmp_path / "data")
    env = {**Server(data).env(), "CUDA_VISIBLE_DEVICES": "0,1"}
    engine = create_engine(f"sqlite:///{data / 'framepack-api.db'}")
    log = (tmp_path / "worker.log").open("wb")
    supervisor = subprocess.Popen([sys.executable, "-m", "framepack_api", "worker", "--gpus", "1,0"], env=env,
                                  stdout=log, stderr=subprocess.STDOUT)

    def rows(state: str) -> list[dict[str, Any]]:
        if not (data / "framepack-api.db").exists():
            return []
        with engine.connect() as conn:
            try:
                found = conn.execute(sa.select(workers).where(workers.c.state == state)).all()
            except sa.exc.OperationalError:  # the schema is still being created
                return []
        return [dict(r._mapping) for r in found]

    try:
        idle = wait_for(lambda: (found := rows("idle")) and len(found) == 2 and found, timeout=120)
        assert sorted((w["visible_devices"], w["device"]) for w in idle) == [("0", "cpu"), ("1", "cpu")]
        for worker in idle:  # its own children, pinned by it
            pid = int(worker["pid"])
            assert int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) == supervisor.pid
            assert _environ(pid)["CUDA_VISIBLE_DEVICES"] == worker["visible_devices"]
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=60) == 0
        # Each child stopped cleanly (it records that on its way out) before the supervisor exited.
        assert {w["id"] for w in rows("stopped")} == {w["id"] for w in idle}
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
        log.close()
        engine.dispose()
