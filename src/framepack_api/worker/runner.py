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

from framepack_api.backends.base import Backend, JobOutput, Progress, RunContext
from framepack_api.disk import DiskGuard, is_disk_full
from framepack_api.errors import DiskFull, JobCancelled, LeaseLost
from framepack_api.gpus import WORKER_GPU_ENV, worker_device_label
from framepack_api.jobs.db import create_engine, upgrade
from framepack_api.jobs.notify import create_listener, is_live
from framepack_api.jobs.retention import discard_dead_attempts, sweep_work_dirs
from framepack_api.jobs.scheduling import scheduling_options
from framepack_api.jobs.store import Job, JobStore
from framepack_api.logs import log_context
from framepack_api.settings import Settings
from framepack_api.storage import create_storage
from framepack_api.worker.lease import Lease, ShutdownRequested, is_transient

log = logging.getLogger(__name__)

FAST_POLL_SECONDS = 0.02
DB_DOWN_BACKOFF_MAX = 5.0
PARENT_PID_ENV = "FRAMEPACK_API_PARENT_PID"  # set by the supervisor for embedded workers
# Set by the supervisor, so that it can tell which job a worker that died by a signal was running.
WORKER_ID_ENV = "FRAMEPACK_API_WORKER_ID"


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class _StopEvent(threading.Event):
    """The stop flag; setting it also ends an idle wait for a wake-up."""

    def __init__(self, wake: threading.Event) -> None:
        super().__init__()
        self.wake_too = wake

    def set(self) -> None:
        super().set()
        self.wake_too.set()


class Worker:
    def __init__(self, settings: Settings, backend_factory: Callable[[Settings], Backend]) -> None:
        self.settings = settings
        self.backend_factory = backend_factory
        self.id = os.environ.get(WORKER_ID_ENV) or new_worker_id()
        self.engine = create_engine(settings.resolved_database_url)
        self.store = JobStore(self.engine, lease_seconds=settings.lease_seconds,
                              max_attempts=settings.max_attempts, **scheduling_options(settings))
        self.storage = create_storage(settings)
        self.wake = threading.Event()  # a job became pending (notify.py), or we are stopping
        self.stopping: threading.Event = _StopEvent(self.wake)
        self.preset: str | None = None
        # Until the model is loaded: the GPU the supervisor pinned this worker to, if any.
        self.device: str | None = os.environ.get(WORKER_GPU_ENV) or None
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
        with log_context(worker_id=self.id):
            self._run_forever(max_jobs)

    def _run_forever(self, max_jobs: int | None) -> None:
        upgrade(self.engine)
        self._seen("starting")
        backend = self.backend_factory(self.settings)
        self.preset = backend.preset
        # Backends that run no model here (remote) have no device.
        self.device = worker_device_label(getattr(backend, "device", None))
        log.info("worker %s ready with model %s on %s", self.id, backend.preset, self.device)
        # Listening before the first claim: a job submitted after that claim wakes us.
        listener = create_listener(self.engine, self.settings.push)
        if listener is not None:
            listener.on("job", self.wake.set)
        done = 0
        last_seen = last_reap = 0.0
        idle_wait = FAST_POLL_SECONDS
        try:
            while not self.stopping.is_set() and (max_jobs is None or done < max_jobs):
                if self._orphaned():
                    log.warning("worker %s: the serve process that started it is gone; exiting", self.id)
                    break
                try:
                    if time.monotonic() - last_reap >= self.settings.reap_interval_seconds:
                        # Workers reap too, so a deployment of workers without an API still recovers.
                        self._discard_dead_attempts(self.store.reap())
                        sweep_work_dirs(self.engine, self.storage, min_age_seconds=self.settings.lease_seconds)
                        last_reap = time.monotonic()
                    self.wake.clear()  # a job committed from here on sets it again
                    job = None if self._disk_low() else self.store.claim(self.id)
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    # The database is away: wait for it rather than exit (and be restarted into it).
                    log.warning("worker %s: database unavailable (%s); retrying", self.id, exc.__class__.__name__)
                    self.stopping.wait(idle_wait)
                    idle_wait = min(max(idle_wait, 0.1) * 2, DB_DOWN_BACKOFF_MAX)
                    continue
                if job is None:
                    if time.monotonic() - last_seen > self.settings.heartbeat_seconds:
                        self._seen("idle")
                        last_seen = time.monotonic()
                    if self.stopping.is_set():
                        continue
                    if is_live(listener):
                        # A submit wakes us: poll only as the fallback for a lost notification, and
                        # wake for our own chores (reaping, the workers row) when they are due.
                        now = time.monotonic()
                        self.wake.wait(max(0.01, min(
                            max(self.settings.poll_interval_seconds, self.settings.push_fallback_poll_seconds),
                            last_reap + self.settings.reap_interval_seconds - now,
                            last_seen + self.settings.heartbeat_seconds - now)))
                    else:
                        # Poll fast right after activity (the next job is often already queued or
                        # about to be), then back off to the configured interval.
                        self.wake.wait(idle_wait)
                        idle_wait = min(idle_wait * 2, self.settings.poll_interval_seconds)
                    continue
                self.run_one(backend, job)
                done += 1
                last_seen = 0.0
                idle_wait = FAST_POLL_SECONDS
        finally:
            if listener is not None:
                listener.stop()
            self._seen("stopped")
            self.engine.dispose()

    def _discard_dead_attempts(self, reaped: list[str]) -> None:
        """A store that is briefly away costs this cleanup a round, never the worker: the next
        completion or retention removes the objects all the same."""
        try:
            discard_dead_attempts(self.engine, self.storage, reaped)
        except Exception as exc:
            if is_transient(exc):
                raise
            log.warning("worker %s: could not remove dead attempts' results of %s: %s", self.id, reaped, exc)

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
        """The workers table is for display and health; a database blip must not stop a job."""
        try:
            self.store.worker_seen(self.id, state=state, pid=os.getpid(), hostname=socket.gethostname(),
                                   preset=self.preset, current_job_id=job_id, device=self.device,
                                   visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"))
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("worker %s: could not record state %r (%s)", self.id, state, exc.__class__.__name__)

    # -- one job -----------------------------------------------------------------------------

    def run_one(self, backend: Backend, job: Job) -> None:
        with log_context(worker_id=self.id, job_id=job.id):
            self._run_one(backend, job)

    def _run_one(self, backend: Backend, job: Job) -> None:
        log.info("job %s: attempt %d of %d", job.id, job.attempt, job.max_attempts)
        self._seen("busy", job.id)
        lease = Lease(self.store, job, self.settings.heartbeat_seconds, self.stopping)
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
                         partial_video=lambda path: lease.partial_video(self.storage, path),
                         seed=lease.record_seed)
        inputs: dict[str, Path] = {}
        lease.start()
        try:
            # In place with a local directory; downloaded into the work directory from an object store.
            inputs = self.storage.fetch_inputs(job.inputs, workdir / "inputs")
            output = backend.run(job.type, job.params, inputs, ctx)
            lease.stop()
            lease.check()  # one last fenced look before publishing
            guard.check(fresh=True)  # and no publishing onto a full disk
            self.publish(job, output, lease)
        except JobCancelled:
            lease.finish(lambda: self.store.mark_cancelled(job))
            log.info("job %s cancelled at a sampling step", job.id)
        except LeaseLost:
            log.warning("job %s: lease lost (reaped, cancelled, or the database was away past the lease); "
                        "abandoning it to the reaper", job.id)
        except DiskFull as exc:
            reason = f"disk full: {exc}"
            lease.finish(lambda: self.store.fail(job, reason))
            log.error("job %s failed: disk full: %s", job.id, exc)
        except ShutdownRequested:
            if lease.finish(lambda: self.store.release(job, "requeued: its worker shut down")):
                log.info("job %s returned to the queue for shutdown", job.id)
        except Exception as exc:
            if is_transient(exc):
                # Not the job's fault: leave it to the reaper, which requeues it when the lease ends.
                log.warning("job %s: database unavailable (%s); abandoning it to the reaper", job.id, exc)
            else:
                log.error("job %s failed:\n%s", job.id, traceback.format_exc())
                if is_disk_full(exc):  # a write hit ENOSPC before the floor was seen: say so plainly
                    error = f"disk full: the disk ran out of space while the job ran ({exc}); nothing was published"
                else:
                    error = f"{exc.__class__.__name__}: {exc}"
                lease.finish(lambda: self.store.fail(job, error))
        finally:
            lease.stop()
            self._save_remote_state(job, inputs)
            self.storage.discard_work(job.id, job.attempt)
            self._seen("idle")

    def _save_remote_state(self, job: Job, inputs: dict[str, Path]) -> None:
        """The remote backend records the remote video's id in its 'remote' input, so that a later
        attempt resumes it instead of creating another; a fetched copy goes back to the store."""
        if "remote" in inputs and inputs["remote"].exists():
            try:
                self.storage.save_back(job.inputs["remote"], inputs["remote"])
            except Exception:
                log.exception("job %s: could not store the remote video's state", job.id)

    def publish(self, job: Job, output: JobOutput, lease: Lease) -> bool:
        """Stage the files under this attempt's own directory, then let the fenced completion
        decide: the winner's paths go into the row; a loser removes what it staged."""
        staged = self.storage.stage_result(job.id, job.attempt, output.files)
        won = False
        try:
            won = lease.finish(lambda: self.store.complete(job, {**staged, "info": output.info}, output.seed))
        finally:
            if won:
                self.storage.keep_only_attempt(job.id, job.attempt)
            else:
                self.storage.discard_result(job.id, job.attempt)
                log.warning("job %s attempt %d finished but its lease was lost; result removed",
                            job.id, job.attempt)
        return won
