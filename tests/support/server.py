"""A real `framepack-api serve` on loopback, as a user would start it, for end-to-end tests."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from PIL import Image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def png_bytes(size: tuple[int, int] = (160, 120), color: tuple[int, int, int] = (200, 40, 40),
              mode: str = "RGB") -> bytes:
    img = Image.new(mode, size, color if mode == "RGB" else (*color, 128))
    # A gradient, so that bucket crops and orientation are visible in the pixels.
    for x in range(0, size[0], 4):
        for y in range(size[1]):
            img.putpixel((x, y), (x % 256, y % 256, 90) if mode == "RGB" else (x % 256, y % 256, 90, 255))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


# Small enough that a job takes well under a second on a CPU with the tiny model.
FAST = {"prompt": "a test", "video_length": "0.3", "latent_window_size": "2", "steps": "2",
        "resolution": "64", "seed": "7"}


class Server:
    def __init__(self, data_dir: Path, *, workers: int = 1, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / f"serve-{self.port}.log"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMEPACK_API_")}
        env.update({
            "FRAMEPACK_API_DATA_DIR": str(self.data_dir), "FRAMEPACK_API_MODEL": "tiny",
            "FRAMEPACK_API_WORKERS": str(self.workers), "FRAMEPACK_API_PORT": str(self.port),
            "FRAMEPACK_API_LEASE_SECONDS": "4", "FRAMEPACK_API_HEARTBEAT_SECONDS": "1",
            "FRAMEPACK_API_REAP_INTERVAL_SECONDS": "0.5", "FRAMEPACK_API_POLL_INTERVAL_SECONDS": "0.1",
        })
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 120.0) -> Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "framepack_api", "serve"], env=self.env(),
                                     stdout=log, stderr=subprocess.STDOUT)
        self.wait_until(lambda h: h["workers_alive"] >= self.workers, timeout)
        return self

    def wait_until(self, predicate: Any, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                health = httpx.get(f"{self.url}/health", timeout=2).json()
                last = health
                if predicate(health):
                    return dict(health)
            except httpx.HTTPError as exc:
                last = exc
            time.sleep(0.2)
        raise TimeoutError(f"server not ready: {last}\n{self.log()}")

    def log(self, tail: int | None = 6000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-tail:] if tail else text

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def worker_pids(self) -> list[int]:
        health = httpx.get(f"{self.url}/health", timeout=5).json()
        return [int(w["pid"]) for w in health["workers"]]

    def submit(self, **fields: Any) -> str:
        data = {**FAST, **{k: str(v) for k, v in fields.items()}}
        r = httpx.post(f"{self.url}/generate", data=data,
                       files={"image": ("in.png", png_bytes(), "image/png")}, timeout=30)
        assert r.status_code == 200, r.text
        return str(r.json()["job_id"])

    def wait_for(self, job_id: str, statuses: tuple[str, ...] = ("completed", "failed", "cancelled"),
                 timeout: float = 90.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = httpx.get(f"{self.url}/status/{job_id}", timeout=10).json()
            if status["status"] in statuses:
                return status
            time.sleep(0.1)
        raise TimeoutError(f"job {job_id} still {status.get('status')}\n{self.log()}")
