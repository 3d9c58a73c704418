"""Real `framepack-api serve` processes on loopback for the issue-5 tests (OpenAI, remote, training, auth).

Servers are started once per test process and shared by name (a session fixture defined in one
conftest is not visible in a sibling directory, so the registry lives here). Every server's data
directory links one shared ``models`` directory, so the tiny model is built once.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

VENV_BIN = Path(sys.executable).parent
_ROOT = Path(tempfile.mkdtemp(prefix="framepack-issue5-"))
_MODELS = _ROOT / "models"

# Small and quick: 64-pixel buckets, fast polling, short leases.
BASE_ENV = {
    "FRAMEPACK_API_MODEL": "tiny",
    "FRAMEPACK_API_DEVICE": "cpu",
    "FRAMEPACK_API_MAX_RESOLUTION": "64",
    "FRAMEPACK_API_DEFAULT_RESOLUTION": "64",
    "FRAMEPACK_API_OPENAI_POLL_AFTER_MS": "100",
    "FRAMEPACK_API_POLL_INTERVAL_SECONDS": "0.1",
    "FRAMEPACK_API_HEARTBEAT_SECONDS": "2",
    "FRAMEPACK_API_LEASE_SECONDS": "20",
}
# FramePack knobs that make a job take well under a few seconds with the tiny model.
QUICK = {"steps": 1, "latent_window_size": 2, "use_teacache": False}
# A job that runs long enough to be cancelled mid-way.
SLOW = {"steps": 40, "latent_window_size": 9}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def png_bytes(width: int = 96, height: int = 64, seed: int = 1) -> bytes:
    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    Image.fromarray((rng.random((height, width, 3)) * 255).astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


@dataclass
class Server:
    name: str
    data_dir: Path
    env: dict[str, str]
    workers: int
    auth: tuple[str, str] | None = None  # Basic credentials for the fixture's own health checks
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def http(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=self.auth, timeout=30, **kwargs)

    def start(self, timeout: float = 120.0) -> Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _MODELS.mkdir(exist_ok=True)
        link = self.data_dir / "models"
        if not link.exists():
            link.symlink_to(_MODELS, target_is_directory=True)
        env = {**os.environ, **BASE_ENV, **self.env}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "framepack-api"), "serve", "--port", str(self.port), "--workers", str(self.workers),
             "--data-dir", str(self.data_dir)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server {self.name} exited:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                health = httpx.get(f"{self.url}/health", auth=self.auth, timeout=2).json()
                # A worker of this very process (not a row left by an earlier one on the same data
                # dir) that went idle has loaded its model: jobs run at once from here on.
                if self.workers == 0 or any(w["state"] == "idle" and _parent(int(w["pid"])) == self.proc.pid
                                            for w in health.get("workers", [])):
                    return self
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"server {self.name} did not become ready:\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)  # serve stops its workers on the way out
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        # A worker spawned while its server was stopping can outlive it; it is ours by its data dir.
        for pid in self._leftover_workers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def restart(self) -> Server:
        self.stop()
        return self.start()

    def _leftover_workers(self) -> list[int]:
        wanted = f"FRAMEPACK_API_DATA_DIR={self.data_dir}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if wanted in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
        return found

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state, past the command name


_RUNNING: dict[str, Server] = {}


def shared(name: str, *, env: dict[str, str] | None = None, workers: int = 1,
           auth: tuple[str, str] | None = None) -> Server:
    """The server called ``name``, started on first use and stopped when the test process ends."""
    server = _RUNNING.get(name)
    if server is None or server.proc is None:
        server = Server(name, _ROOT / name, dict(env or {}), workers, auth)
        _RUNNING[name] = server
        server.start()
    return server


@atexit.register
def _stop_all() -> None:
    for server in _RUNNING.values():
        server.stop()
    shutil.rmtree(_ROOT, ignore_errors=True)


def wait_for(check: Any, timeout: float = 60.0, interval: float = 0.1) -> Any:
    """Call ``check`` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {check}")
        time.sleep(interval)
