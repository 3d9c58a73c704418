"""Spawns the embedded workers of `serve` as their own OS processes and restarts any that dies.

Each child is `framepack-api worker`, the same command an operator runs on another machine, so
embedded and standalone workers are one code path and `ps` says what each process is.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from framepack_api.settings import Settings
from framepack_api.worker.runner import PARENT_PID_ENV

log = logging.getLogger(__name__)

RESTART_BACKOFF_MAX = 30.0


def worker_command() -> list[str]:
    script = Path(sys.executable).parent / "framepack-api"
    if script.exists():
        return [sys.executable, str(script), "worker"]
    found = shutil.which("framepack-api")
    return [found, "worker"] if found else [sys.executable, "-m", "framepack_api", "worker"]


def settings_env(settings: Settings) -> dict[str, str]:
    """The parent's effective settings (CLI flags included) as the child's environment."""
    env = dict(os.environ)
    for name, value in settings.model_dump(mode="json").items():
        key = f"FRAMEPACK_API_{name.upper()}"
        if value is None:
            env.pop(key, None)
        elif isinstance(value, (list, dict)):
            env[key] = json.dumps(value)  # what pydantic-settings parses back for complex fields
        else:
            env[key] = str(value)
    return env


class Supervisor:
    def __init__(self, settings: Settings, count: int) -> None:
        self.settings = settings
        self.count = count
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * count
        self.restarts = [0] * count
        self.spawned_at = [0.0] * count
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)

    def start(self) -> None:
        for slot in range(self.count):
            self._spawn(slot)
        self.thread.start()

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p is not None and p.poll() is None]

    def _spawn(self, slot: int) -> None:
        env = {**settings_env(self.settings), PARENT_PID_ENV: str(os.getpid())}
        proc = subprocess.Popen(worker_command(), env=env,
                                start_new_session=True)  # a terminal's Ctrl-C reaches us, not them
        self.procs[slot] = proc
        self.spawned_at[slot] = time.monotonic()
        log.info("started worker %d (pid %d)", slot, proc.pid)

    def _watch(self) -> None:
        while not self.stopping.wait(0.5):
            for slot, proc in enumerate(self.procs):
                if proc is None or proc.poll() is None:
                    continue
                if time.monotonic() - self.spawned_at[slot] > 60:
                    self.restarts[slot] = 0  # it ran well for a while: this is a new failure
                self.restarts[slot] += 1
                delay = min(RESTART_BACKOFF_MAX, 0.5 * 2 ** min(self.restarts[slot] - 1, 6))
                log.warning("worker %d (pid %d) exited with %s; restarting in %.1fs",
                            slot, proc.pid, proc.returncode, delay)
                if self.stopping.wait(delay):
                    return
                self._spawn(slot)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every worker (each gives its job back) and wait; SIGKILL what lingers."""
        self.stopping.set()
        live = [p for p in self.procs if p is not None and p.poll() is None]
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in live:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker pid %d did not stop in %.0fs; killing it", proc.pid, timeout)
                proc.kill()
                proc.wait()
