"""A running job's lease: heartbeats, progress, previews and the cancel flag, all fenced writes.

A database blip must not fail a job that is running fine: a write that meets a transient database
error is retried with backoff for as long as the lease it would renew still holds. Only when the
lease has run out does the worker give the job up (`LeaseLost`); the reaper then requeues it.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa

from framepack_api.backends.base import Progress
from framepack_api.disk import is_disk_full
from framepack_api.errors import JobCancelled, LeaseLost
from framepack_api.jobs.store import Heartbeat, Job, JobStore
from framepack_api.storage import Storage

log = logging.getLogger(__name__)

T = TypeVar("T")

# A running job never shows 100: that is the completed state (the last step is followed by decode and write).
RUNNING_PROGRESS_CAP = 99.0
FINISHING_MESSAGE = "sampling done; decoding and writing the output"
# Progress writes closer together than this are folded into the next one; the cancel flag
# comes back with each write, so cancellation is still seen within this time.
PROGRESS_WRITE_INTERVAL = 0.25
RETRY_FIRST_DELAY = 0.1
RETRY_MAX_DELAY = 2.0


class ShutdownRequested(Exception):
    """SIGTERM/SIGINT arrived while a job was running: give the job back and exit."""


def is_transient(exc: BaseException) -> bool:
    """Errors that a reconnect can cure: a dropped or refused connection, a locked SQLite file."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError))


def retry_until(deadline: float, call: Callable[[], T], what: str) -> tuple[bool, T | None]:
    """Call until it returns or a non-transient error is raised; transient database errors are
    retried with backoff until ``deadline`` (time.monotonic). Returns (done, result)."""
    delay = RETRY_FIRST_DELAY
    while True:
        try:
            return True, call()
        except sa.exc.SQLAlchemyError as exc:
            if not is_transient(exc):
                raise
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning("%s: database still unreachable and the lease has run out (%s); giving up",
                            what, exc.__class__.__name__)
                return False, None
            log.warning("%s: transient database error, retrying in %.1fs: %s", what, min(delay, remaining),
                        str(exc).splitlines()[0][:200])
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, RETRY_MAX_DELAY)


class Lease:
    """Keeps a running job's lease alive and carries its progress and cancel flag."""

    def __init__(self, store: JobStore, job: Job, interval: float, stopping: threading.Event) -> None:
        self.store, self.job, self.interval, self.stopping = store, job, interval, stopping
        self.state = Heartbeat.ok
        self.last_write = 0.0
        # When the lease in the row runs out, by this process's clock: renewed by every write.
        self.expires = time.monotonic() + store.lease_seconds
        self.last_preview = 0.0
        self.first_step_at: float | None = None
        self.last_section = 0
        self.lock = threading.Lock()
        self.done = threading.Event()
        # In the job's logging context, so heartbeat lines carry its job and worker ids.
        self.thread = threading.Thread(target=contextvars.copy_context().run, args=(self._beat,),
                                       name=f"lease-{job.id[:8]}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.done.set()
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            self.thread.join(timeout=5)

    def finish(self, call: Callable[[], bool]) -> bool:
        """A final transition (complete, fail, cancel, release): retried like a heartbeat while the
        lease holds. False when it changed no row or could not be written."""
        with self.lock:
            done, changed = retry_until(self.expires, call, f"job {self.job.id}: final write")
        return bool(done and changed)

    def _beat(self) -> None:
        # Covers long stretches without sampling steps: text encoding, VAE decode, MP4 writing.
        while not self.done.wait(self.interval):
            self._write(lambda: self.store.heartbeat(self.job))

    def _write(self, call: Callable[[], Heartbeat]) -> None:
        with self.lock:
            if self.state is Heartbeat.lost:
                return
            started = time.monotonic()
            done, state = retry_until(self.expires, call, f"job {self.job.id}: lease write")
            if not done or state is None:
                self.state = Heartbeat.lost  # the reaper requeues it; the worker stops here
                return
            self.state = state
            if state is not Heartbeat.lost:
                self.expires = started + self.store.lease_seconds
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
            # 100 means completed: after the last step come the VAE decode and the file write,
            # which can take a while, so a running job stops just short of it.
            fields = {"progress": min(p.percent, RUNNING_PROGRESS_CAP), "step": p.step, "total_steps": p.total_steps,
                      "section": p.section, "total_sections": p.total_sections,
                      "message": FINISHING_MESSAGE if last_step else
                                 p.message or f"section {p.section}/{p.total_sections}, step {p.step}/{p.total_steps}"}
            extra = {"eta_seconds": self._eta(p, now)}
            self._write(lambda: self.store.heartbeat(self.job, event_extra=extra, **fields))
        self.check()

    def record_seed(self, seed: int) -> None:
        """The seed the backend drew, written at once (fenced) so /status shows it while running."""
        self._write(lambda: self.store.heartbeat(self.job, seed=seed))

    def _eta(self, p: Progress, now: float) -> float | None:
        """From this job's own step rate so far (the first step's time is not counted)."""
        done = (p.section - 1) * p.total_steps + p.step
        total = p.total_sections * p.total_steps
        if self.first_step_at is None or done <= 1:
            return None
        per_step = (now - self.first_step_at) / (done - 1)
        return round(per_step * (total - done), 2)

    def preview(self, storage: Storage, produced: Path) -> None:
        """Publish the newest latent preview; the DB row and event at most every interval."""
        self.check()  # fenced first: an attempt that lost its job must not replace the winner's preview
        relative = self._store_preview(storage, produced, "preview.jpg")
        if relative is not None and time.monotonic() - self.last_preview >= PROGRESS_WRITE_INTERVAL:
            self._write(lambda: self.store.set_preview(self.job, relative))
            self.last_preview = time.monotonic()
        self.check()

    def partial_video(self, storage: Storage, produced: Path) -> None:
        self.check()
        self._store_preview(storage, produced, "partial.mp4")
        self.check()

    def _store_preview(self, storage: Storage, produced: Path, name: str) -> str | None:
        """Previews are best effort: an object store that is briefly away skips one, never fails the job."""
        try:
            return storage.save_preview(self.job.id, produced, name)
        except Exception as exc:
            if is_disk_full(exc):  # the job cannot finish either: fail it as a full disk, as before
                raise
            log.warning("job %s: could not store %s (%s); skipped", self.job.id, name, exc)
            return None

    def check(self) -> bool:
        """Called at every sampling step: raises when the job must stop; False otherwise."""
        if time.monotonic() - self.last_write >= PROGRESS_WRITE_INTERVAL:
            self._write(lambda: self.store.heartbeat(self.job))
        if self.state is Heartbeat.lost:
            raise LeaseLost(self.job.id)
        if self.state is Heartbeat.cancel_requested:
            raise JobCancelled(self.job.id)
        if self.stopping.is_set():
            raise ShutdownRequested(self.job.id)
        return False
