"""Run `framepack-api serve` as a subprocess on a free loopback port, for benchmarks.

The server gets a clean environment (no inherited ``FRAMEPACK_API_*`` variables, no ``.env`` from
the current directory) and its own data directory. ``stop()`` asks it to shut down (SIGTERM, which
also stops its embedded workers), then kills whatever is left: the server's process group and the
worker processes it reported in ``/health`` (they run in sessions of their own).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import httpx

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def serve_command() -> list[str]:
    script = Path(sys.executable).parent / "framepack-api"
    if script.exists():
        return [sys.executable, str(script), "serve"]
    return [sys.executable, "-m", "framepack_api", "serve"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0); reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


class ServerProcess:
    def __init__(self, data_dir: Path, *, workers: int = 1, model: str = "tiny",
                 env: dict[str, str] | None = None, log_path: Path | None = None) -> None:
        self.data_dir = data_dir
        self.workers = workers
        self.model = model
        self.port = free_port()
        self.base_url = f"http://{LOOPBACK}:{self.port}"
        self.extra_env = env or {}
        self.log_path = log_path or data_dir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.worker_pids: set[int] = set()
        self._log: IO[bytes] | None = None

    # -- start -----------------------------------------------------------------------------

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMEPACK_API_")}
        env.update(self.extra_env)
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [*serve_command(), "--host", LOOPBACK, "--port", str(self.port), "--workers", str(self.workers),
               "--model", self.model, "--data-dir", str(self.data_dir)]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        # Own session: a Ctrl-C in the terminal reaches the benchmark, which then stops the server itself.
        self.proc = subprocess.Popen(cmd, env=env, cwd=self.data_dir, stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)

    def wait_ready(self, timeout: float = 180.0) -> dict[str, Any]:
        """Until /health shows ``workers`` live workers that have finished loading the model."""
        deadline = time.monotonic() + timeout
        last: Any = None
        with httpx.Client(base_url=self.base_url, timeout=5.0, trust_env=False) as http:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    r = http.get("/health")
                    is_json = r.headers.get("content-type", "").startswith("application/json")
                    last = r.json() if is_json else r.text
                    if r.status_code in (200, 503):  # 503: degraded, e.g. workers loading
                        self._note_workers(last)
                        ready = [w for w in last.get("workers", []) if w.get("state") != "starting"]
                        if last.get("workers_alive", 0) >= self.workers and len(ready) >= self.workers:
                            return dict(last)
                except httpx.HTTPError as exc:
                    last = repr(exc)
                time.sleep(0.1)
        raise TimeoutError(f"server not ready in {timeout:.0f}s; last /health: {last}\n{self.log_tail()}")

    def _note_workers(self, health: dict[str, Any]) -> None:
        for w in health.get("workers", []):
            if isinstance(w.get("pid"), int):
                self.worker_pids.add(w["pid"])

    def refresh_workers(self) -> None:
        with contextlib.suppress(httpx.HTTPError, ValueError), \
                httpx.Client(base_url=self.base_url, timeout=5.0, trust_env=False) as http:
            self._note_workers(http.get("/health").json())

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # -- stop ------------------------------------------------------------------------------

    def stop(self, timeout: float = 30.0) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)  # uvicorn shuts down, then the supervisor stops its workers
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        # Workers run in their own sessions; any that outlived the server are ours to end.
        lingering = [pid for pid in self.worker_pids if _alive(pid)]
        for pid in lingering:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while lingering and time.monotonic() < deadline:
            lingering = [pid for pid in lingering if _alive(pid)]
            time.sleep(0.1)
        for pid in lingering:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
