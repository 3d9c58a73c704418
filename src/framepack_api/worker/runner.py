"""The worker: load the backend once, then claim → run → complete, one job at a time.

The job's row is the only state. A lease, renewed by every progress write and by a heartbeat
thread, proves the job is still ours; a write that changes no row means it is not, and we stop.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from framepack_api.backends.base import Backend, Progress, RunContext
from framepack_api.disk import DiskGuard, is_disk_full
from framepack_api.errors import DiskFull, JobCancelled, LeaseLost
from framepack_api.jobs.db import create_engine, upgrade
from framepack_api.jobs.retention import sweep_work_dirs
from framepack_api.jobs.scheduling import scheduling_options
from framepack_api.jobs.store import Heartbeat, Job, JobStore
from framepack_api.settings import Settings
from framepack_api.storage import LocalStorage

log = logging.getLogger(__name__)

# Progress writes closer together than this are folded into the next one; the cancel flag
# comes back with each write, so cancellation is still seen within this time.
PROGRESS_WRITE_INTERVAL = 0.25


FAST_POLL_SECONDS = 0.02
PARENT_PID_ENV = "FRAMEPACK_API_PARENT_PID"  # set by the supervisor for embedded workers


class ShutdownRequested(Exception):
    """SIGTERM/SIGINT arrived while a job was running: give the job back and exit."""


class Worker:
    def __init__(self, settings: Settings, backend_factory: Callable[[Settings], Backend]) -> None:
        self.settings = settings
        self.backend_factory = backend_factory
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.engine = create_engine(settings.resolved_database_url)
        self.store = JobStore(self.engine, lease_seconds=settings.lease_seconds,
                              max_attempts=settings.max_attempts, **scheduling_options(settings))
        self.storage = LocalStorage(settings.storage_dir)
        self.stopping = threading.Event()
        self.preset: str | None = None
        self.disk = DiskGuard(self.storage.root, settings.min_free_disk_mb)
        self.low_disk_logged = False

    # -- lifecycle ---------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        def _stop(signum: int, _frame: FrameType | None) -> None:
            log.info("worker %s: signal %d, stopping after the current step", self.id, signum)
            self.stopping.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)

    def run_forever(self, *, max_jobs: int | None = None) -> None:
        upgrade(self.engine)
        self._seen("starting")
        backend = self.backend_factory(self.settings)
        self.preset = backend.preset
        log.info("worker %s ready with model %s", self.id, backend.preset)
        done = 0
        last_seen = last_reap = 0.0
        idle_wait = FAST_POLL_SECONDS
        try:
            while not self.stopping.is_set() and (max_jobs is None or done < max_jobs):
                if self._orphaned():
                    log.warning("worker %s: the serve process that started it is gone; exiting", self.id)
                    break
                if time.monotonic() - last_reap >= self.settings.reap_interval_seconds:
                    # Workers reap too, so a deployment of workers without an API still recovers.
                    self.store.reap()
                    sweep_work_dirs(self.engine, self.storage, min_age_seconds=self.settings.lease_seconds)
                    last_reap = time.monotonic()
                job = None if self._disk_low() else self.store.claim(self.id)
                if job is None:
                    if time.monotonic() - last_seen > self.settings.heartbeat_seconds:
                        self._seen("idle")
                        last_seen = time.monotonic()
                    # Poll fast right after activity (the next job is often already queued or
                    # about to be), then back off to the configured interval.
                    self.stopping.wait(idle_wait)
                    idle_wait = min(idle_wait * 2, self.settings.poll_interval_seconds)
                    continue
                self.run_one(backend, job)
                done += 1
                last_seen = 0.0
                idle_wait = FAST_POLL_SECONDS
        finally:
            self._seen("stopped")
            self.engine.dispose()

    def _disk_low(self) -> bool:
        """Below the free-space floor the worker takes no job (it could not write the result);
        the jobs wait in the queue until space is freed."""
        space = self.disk.low()
        if space is not None and not self.low_disk_logged:
            log.warning("worker %s: not taking jobs: %s", self.id, space.reason())
        elif space is None and self.low_disk_logged:
            log.info("worker %s: disk space back above the floor; taking jobs again", self.id)
        self.low_disk_logged = space is not None
        return space is not None

    def _orphaned(self) -> bool:
        """An embedded worker outliving its `serve` (killed with SIGKILL) would keep taking jobs
        nobody supervises; it leaves instead. Standalone workers have no parent to watch."""
        parent = os.environ.get(PARENT_PID_ENV)
        return parent is not None and os.getppid() != int(parent)

    def _seen(self, state: str, job_id: str | None = None) -> None:
        self.store.worker_seen(self.id, state=state, pid=os.getpid(), hostname=socket.gethostname(),
                               preset=self.preset, current_job_id=job_id)

    # -- one job -----------------------------------------------------------------------------

    def run_one(self, backend: Backend, job: Job) -> None:
        log.info("job %s: attempt %d of %d", job.id, job.attempt, job.max_attempts)
        self._seen("busy", job.id)
        lease = _Lease(self.store, job, self.settings.heartbeat_seconds, self.stopping)
        workdir = self.storage.work_dir(job.id, job.attempt)
        guard = DiskGuard(self.storage.root, self.settings.min_free_disk_mb)

        def report(p: Progress) -> None:
            guard.check()
            lease.report(p)

        def cancelled() -> bool:
            guard.check()
            return lease.check()

        ctx = RunContext(workdir=workdir, progress=report, cancelled=cancelled,
                         preview=lambda path: lease.preview(self.storage, path),
                         partial_video=lambda path: lease.partial_video(self.storage, path))
        inputs = {name: self.storage.resolve(rel) for name, rel in job.inputs.items()}
        lease.start()
        try:
            output = backend.run(job.type, job.params, inputs, ctx)
            lease.stop()
            lease.check()  # one last fenced look before publishing
            guard.check(fresh=True)  # and no publishing onto a full disk
            result = {**self.storage.publish(job.id, output.files), "info": output.info}
            if not self.store.complete(job, result, output.seed):
                log.warning("job %s finished but its lease was lost; result dropped", job.id)
        except JobCancelled:
            self.store.mark_cancelled(job)
            log.info("job %s cancelled at a sampling step", job.id)
        except LeaseLost:
            log.warning("job %s: lease lost (reaped or cancelled elsewhere); abandoning", job.id)
        except DiskFull as exc:
            self.store.fail(job, f"disk full: {exc}")
            log.error("job %s failed: disk full: %s", job.id, exc)
        except ShutdownRequested:
            self.store.release(job, "requeued: its worker shut down")
            log.info("job %s returned to the queue for shutdown", job.id)
        except Exception as exc:
            log.error("job %s failed:\n%s", job.id, traceback.format_exc())
            if is_disk_full(exc):  # a write hit ENOSPC before the floor was seen: say so plainly
                self.store.fail(job, f"disk full: the disk ran out of space while the job ran ({exc}); "
                                     "nothing was published")
            else:
                self.store.fail(job, f"{exc.__class__.__name__}: {exc}")
        finally:
            lease.stop()
            self.storage.discard_work(job.id, job.attempt)
            self._seen("idle")


class _Lease:
    """Keeps a running job's lease alive and carries its progress and cancel flag."""

    def __init__(self, store: JobStore, job: Job, interval: float, stopping: threading.Event) -> None:
        self.store, self.job, self.interval, self.stopping = store, job, interval, stopping
        self.state = Heartbeat.ok
        self.last_write = 0.0
        self.last_preview = 0.0
        self.first_step_at: float | None = None
        self.last_section = 0
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"lease-{job.id[:8]}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.done.set()
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            self.thread.join(timeout=5)

    def _beat(self) -> None:
        # Covers long stretches without sampling steps: text encoding, VAE decode, MP4 writing.
        while not self.done.wait(self.interval):
            self._write({})

    def _write(self, fields: dict[str, object], extra: dict[str, object] | None = None) -> None:
        with self.lock:
            if self.state is Heartbeat.lost:
                return
            self.state = self.store.heartbeat(self.job, event_extra=extra, **fields)
            self.last_write = time.monotonic()

    def report(self, p: Progress) -> None:
        now = time.monotonic()
        if self.first_step_at is None:
            self.first_step_at = now
        last_step = p.step == p.total_steps and p.section == p.total_sections
        # Always written: a section's first step and the job's last; otherwise at most every interval.
        new_section = p.section != self.last_section
        if new_section or last_step or now - self.last_write >= PROGRESS_WRITE_INTERVAL:
            self.last_section = p.section
            self._write({"progress": p.percent, "step": p.step, "total_steps": p.total_steps,
                         "section": p.section, "total_sections": p.total_sections,
                         "message": p.message or f"section {p.section}/{p.total_sections}, "
                                                 f"step {p.step}/{p.total_steps}"},
                        extra={"eta_seconds": self._eta(p, now)})
        self.check()

    def _eta(self, p: Progress, now: float) -> float | None:
        """From this job's own step rate so far (the first step's time is not counted)."""
        done = (p.section - 1) * p.total_steps + p.step
        total = p.total_sections * p.total_steps
        if self.first_step_at is None or done <= 1:
            return None
        per_step = (now - self.first_step_at) / (done - 1)
        return round(per_step * (total - done), 2)

    def preview(self, storage: LocalStorage, produced: Path) -> None:
        """Publish the newest latent preview; the DB row and event at most every interval."""
        relative = storage.save_preview(self.job.id, produced, "preview.jpg")
        if time.monotonic() - self.last_preview >= PROGRESS_WRITE_INTERVAL:
            with self.lock:
                if self.state is not Heartbeat.lost:
                    self.state = self.store.set_preview(self.job, relative)
                    self.last_write = self.last_preview = time.monotonic()
        self.check()

    def partial_video(self, storage: LocalStorage, produced: Path) -> None:
        storage.save_preview(self.job.id, produced, "partial.mp4")
        self.check()

    def check(self) -> bool:
        """Called at every sampling step: raises when the job must stop; False otherwise."""
        if time.monotonic() - self.last_write >= PROGRESS_WRITE_INTERVAL:
            self._write({})
        if self.state is Heartbeat.lost:
            raise LeaseLost(self.job.id)
        if self.state is Heartbeat.cancel_requested:
            raise JobCancelled(self.job.id)
        if self.stopping.is_set():
            raise ShutdownRequested(self.job.id)
        return False

