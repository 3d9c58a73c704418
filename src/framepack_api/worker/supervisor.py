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
from collections.abc import Sequence
from pathlib import Path

from framepack_api.gpus import WORKER_GPU_ENV, WorkerSlot
from framepack_api.settings import Settings
from framepack_api.worker.runner import PARENT_PID_ENV, WORKER_ID_ENV, new_worker_id

log = logging.getLogger(__name__)

RESTART_BACKOFF_MAX = 30.0
SIGNAL_DEATHS_BEFORE_GIVING_UP = 2


def death_reason(signum: int) -> str:
    """Why a worker's job stopped, as recorded in the job's `error`."""
    # Windows has no SIGKILL (and no negative return codes): 9 is what POSIX kernels send.
    if signum == getattr(signal, "SIGKILL", 9):
        # What the kernel's OOM killer sends; an operator's kill -9 looks the same.
        return "worker killed by signal 9, likely out of memory"
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = "unknown"
    return f"worker killed by signal {signum} ({name})"


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
    def __init__(self, settings: Settings, slots: int | Sequence[WorkerSlot]) -> None:
        """`slots`: the workers to keep running (each keeps its GPU across restarts), or a number
        of unpinned ones."""
        self.settings = settings
        self.slots = [WorkerSlot(None) for _ in range(slots)] if isinstance(slots, int) else list(slots)
        count = self.count = len(self.slots)
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * count
        self.worker_ids: list[str] = [""] * count
        # Spawning and stopping exclude each other, so that no worker is started after stop began.
        self.lock = threading.RLock()  # re-entered when a signal handler interrupts stop()
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
        with self.lock:
            if self.stopping.is_set():
                return
            worker_id = f"{new_worker_id()}-w{slot}"
            env = {**settings_env(self.settings), PARENT_PID_ENV: str(os.getpid()), WORKER_ID_ENV: worker_id}
            env.pop(WORKER_GPU_ENV, None)
            env["FRAMEPACK_API_GPUS"] = ""  # the child is a worker, never another supervisor
            env.update(self.slots[slot].env(self.settings.device))
            proc = subprocess.Popen(worker_command(), env=env,
                                    start_new_session=True)  # a terminal's Ctrl-C reaches us, not them
            self.procs[slot] = proc
            self.worker_ids[slot] = worker_id
            self.spawned_at[slot] = time.monotonic()
        log.info("started worker %d (pid %d) on %s", slot, proc.pid, self.slots[slot].label)

    def _record_death(self, slot: int, signum: int) -> None:
        """Record on the dead worker's job why it stopped, and requeue or fail it now rather than
        after its lease runs out."""
        from framepack_api.jobs.db import create_engine
        from framepack_api.jobs.retention import discard_dead_attempts
        from framepack_api.jobs.store import JobStore
        from framepack_api.storage import create_storage

        reason = death_reason(signum)
        engine = create_engine(self.settings.resolved_database_url)
        try:
            store = JobStore(engine, lease_seconds=self.settings.lease_seconds,
                             max_attempts=self.settings.max_attempts)
            killed = store.worker_killed(self.worker_ids[slot], reason, give_up_after=SIGNAL_DEATHS_BEFORE_GIVING_UP)
            for job_id in killed:
                log.warning("job %s: %s", job_id, reason)
            # What the dead attempt uploaded but never published (it may have died in between).
            discard_dead_attempts(engine, create_storage(self.settings), killed)
        except Exception:
            # The reaper still requeues the job when its lease runs out; the reason is what is lost.
            log.exception("could not record the death of worker %d on its job", slot)
        finally:
            engine.dispose()

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
                if proc.returncode < 0:
                    self._record_death(slot, -proc.returncode)
                if self.stopping.wait(delay):
                    return
                self._spawn(slot)

    def request_stop(self) -> None:
        """SIGTERM every worker: each gives its job back at its next sampling step. Safe to call
        from a signal handler and more than once."""
        with self.lock:
            self.stopping.set()
            live = [p for p in self.procs if p is not None and p.poll() is None]
        for proc in live:
            proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every worker (each gives its job back) and wait; SIGKILL what lingers."""
        self.request_stop()
        live = [p for p in self.procs if p is not None and p.poll() is None]
        deadline = time.monotonic() + timeout
        for proc in live:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker pid %d did not stop in %.0fs; killing it", proc.pid, timeout)
                proc.kill()
                proc.wait()


def supervise_until_signalled(settings: Settings, slots: Sequence[WorkerSlot]) -> None:
    """`framepack-api worker --gpus`: keep one worker process per slot running until SIGTERM or
    SIGINT, then stop them (each gives its job back) and exit."""
    supervisor = Supervisor(settings, slots)
    done = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping %d worker(s)", signum, supervisor.count)
        supervisor.request_stop()
        done.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    supervisor.start()
    try:
        while not done.wait(1.0):
            pass
    finally:
        supervisor.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
