"""The job store: a job's whole life as short functions, each transition one conditional UPDATE.

Every write that a worker makes about a running job is fenced by (worker_id, attempt): when it
changes no row, the worker has lost the job (reaped, or cancelled) and must stop.
"""

from __future__ import annotations

import enum
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from framepack_api.errors import Conflict, JobNotFound
from framepack_api.jobs import rank
from framepack_api.jobs.db import read_tx, write_tx
from framepack_api.jobs.events import emit, emit_status
from framepack_api.jobs.metric_totals import count_transition
from framepack_api.jobs.scheduling import claim_key
from framepack_api.jobs.schema import JobStatus
from framepack_api.jobs.tables import job_events, jobs, webhook_deliveries, workers
from framepack_api.params import JobType

Clock = Callable[[], float]


@dataclass(frozen=True)
class Job:
    id: str
    type: JobType
    status: JobStatus
    params: dict[str, Any]
    inputs: dict[str, str]
    priority: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    worker_id: str | None
    attempt: int
    max_attempts: int
    lease_expires_at: float | None
    cancel_requested: bool
    progress: float
    step: int | None
    total_steps: int | None
    section: int | None
    total_sections: int | None
    message: str | None
    error: str | None
    seed: int | None
    result: dict[str, Any] | None
    idempotency_key: str | None
    request_hash: str | None
    updated_at: float
    webhook_url: str | None
    webhook_events: list[str] | None
    preview: str | None
    files_expired_at: float | None
    owner: str

    @classmethod
    def from_row(cls, row: Any) -> Job:
        data = dict(row._mapping)
        data["type"] = JobType(data["type"])
        data["status"] = JobStatus(data["status"])
        data["cancel_requested"] = bool(data["cancel_requested"])
        return cls(**{f.name: data[f.name] for f in fields(cls)})


class Heartbeat(enum.Enum):
    """What a fenced progress write found."""

    ok = "ok"
    cancel_requested = "cancel_requested"
    lost = "lost"


@dataclass(frozen=True)
class NewJob:
    type: JobType
    params: dict[str, Any]
    inputs: dict[str, str]
    priority: int = 0
    idempotency_key: str | None = None
    request_hash: str | None = None
    id: str = ""
    webhook_url: str | None = None
    webhook_events: list[str] | None = None
    owner: str = ""  # the creating credential's key id; "" while auth is off


def _mine(owner: str | None) -> Any:
    """Rows visible to ``owner``; None sees every row (an admin, or auth off)."""
    return sa.true() if owner is None else jobs.c.owner == owner


visible_to = _mine  # for readers outside this module (jobs/status_read.py)


def count_ahead(conn: sa.Connection, claim_key: float, created_at: float, job_id: str) -> int:
    """Pending jobs before (claim_key, created_at, id) in claim order, from the block counts of
    jobs/rank.py: O(sqrt n) entries read, not one per job ahead."""
    return int(conn.execute(sa.select(rank.ahead((claim_key, created_at, job_id)))).scalar_one())


class JobStore:
    def __init__(self, engine: Engine, *, lease_seconds: float = 60.0, max_attempts: int = 3,
                 clock: Clock = time.time, type_boost: Mapping[JobType, int] | None = None,
                 aging_seconds: float = 0.0) -> None:
        self.engine = engine
        # Scheduling (issue 4): effective priority = priority + type_boost[type] + seconds waited /
        # aging_seconds, stored at submit as jobs.claim_key; see scheduling.claim_key.
        self.type_boost = {t: b for t, b in (type_boost or {}).items() if b}
        self.aging_seconds = aging_seconds
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.clock = clock

    # -- submit and read ---------------------------------------------------------------------

    def submit(self, new: NewJob) -> tuple[Job, bool]:
        """Insert a pending job. Returns (job, created); an idempotency key seen before returns
        the job it made, and raises Conflict when it was used for a different request."""
        if new.idempotency_key:
            existing = self.replay(new.idempotency_key, new.request_hash, new.owner)
            if existing is not None:
                return existing, False
        now = self.clock()
        values = {
            "id": new.id or str(uuid.uuid4()), "type": new.type.value, "status": JobStatus.pending.value,
            "params": new.params, "inputs": new.inputs, "priority": new.priority,
            "created_at": now, "updated_at": now, "attempt": 0, "max_attempts": self.max_attempts,
            "cancel_requested": False, "progress": 0.0, "idempotency_key": new.idempotency_key,
            "request_hash": new.request_hash, "webhook_url": new.webhook_url,
            "webhook_events": new.webhook_events, "owner": new.owner,
            # Computed once here and never changed after: claim and position read it via the index.
            "claim_key": float(claim_key(new.priority, new.type, now, type_boost=self.type_boost,
                                         aging_seconds=self.aging_seconds)),
        }
        try:
            with write_tx(self.engine) as conn:
                row = conn.execute(jobs.insert().values(**values).returning(*jobs.c)).one()
                emit_status(conn, row, now)
        except sa.exc.IntegrityError:
            # Two requests with one key raced; the loser answers with the winner's job.
            existing = self.replay(new.idempotency_key or "", new.request_hash, new.owner)
            if existing is None:
                raise
            return existing, False
        return Job.from_row(row), True

    def replay(self, idempotency_key: str, request_hash: str | None, owner: str = "") -> Job | None:
        """The job an idempotency key already made for this owner, or None; Conflict when the key was
        used for a different request. Callers check this before writing any input file."""
        existing = self.find_by_idempotency_key(idempotency_key, owner)
        if existing is not None and existing.request_hash and request_hash and existing.request_hash != request_hash:
            raise Conflict("Idempotency-Key was already used for a different request")
        return existing

    def find_by_idempotency_key(self, key: str, owner: str = "") -> Job | None:
        """Keys are scoped per owner, always (an admin's keys are its own too)."""
        with read_tx(self.engine) as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.idempotency_key == key, jobs.c.owner == owner)).first()
        return Job.from_row(row) if row else None

    def get(self, job_id: str, owner: str | None = None) -> Job:
        """The job; JobNotFound also when it belongs to someone other than ``owner`` (None: anyone)."""
        with read_tx(self.engine) as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id, _mine(owner))).first()
        if row is None:
            raise JobNotFound(job_id)
        return Job.from_row(row)

    def position(self, job: Job) -> int | None:
        """1-based place among pending jobs in claim order; None when not pending.

        Block counts before the job's block plus an index range inside it (jobs/rank.py).
        """
        if job.status is not JobStatus.pending:
            return None
        with read_tx(self.engine) as conn:
            mine = conn.execute(sa.select(jobs.c.claim_key).where(jobs.c.id == job.id)).scalar_one_or_none()
            if mine is None:
                return None
            return count_ahead(conn, mine, job.created_at, job.id) + 1

    def _claim_order(self) -> list[Any]:
        # The order of ix_jobs_claim_key after its status column; claim_key never changes after submit.
        return [jobs.c.claim_key, jobs.c.created_at, jobs.c.id]

    def list_pending(self, limit: int = 1000, owner: str | None = None) -> list[Job]:
        return self._select(sa.and_(jobs.c.status == JobStatus.pending.value, _mine(owner)),
                            self._claim_order(), limit)

    def list_processing(self, owner: str | None = None) -> list[Job]:
        return self._select(sa.and_(jobs.c.status == JobStatus.processing.value, _mine(owner)),
                            [jobs.c.started_at], 1000)

    def list_finished(self, limit: int, owner: str | None = None) -> list[Job]:
        terminal = [s.value for s in (JobStatus.completed, JobStatus.failed, JobStatus.cancelled)]
        return self._select(sa.and_(jobs.c.status.in_(terminal), _mine(owner)), [jobs.c.finished_at.desc()], limit)

    def list_jobs(self, status: JobStatus | None = None, limit: int = 50, owner: str | None = None) -> list[Job]:
        where = jobs.c.status == status.value if status else sa.true()
        return self._select(sa.and_(where, _mine(owner)), [jobs.c.created_at.desc()], limit)

    def _select(self, where: Any, order: list[Any], limit: int) -> list[Job]:
        with read_tx(self.engine) as conn:
            rows = conn.execute(sa.select(jobs).where(where).order_by(*order).limit(limit)).all()
        return [Job.from_row(r) for r in rows]

    def counts(self) -> dict[str, int]:
        with read_tx(self.engine) as conn:
            rows = conn.execute(sa.select(jobs.c.status, sa.func.count()).group_by(jobs.c.status)).all()
        return {status: int(n) for status, n in rows}

    # -- the worker's side -------------------------------------------------------------------

    def claim(self, worker_id: str) -> Job | None:
        """Take the next pending job: one conditional UPDATE of one row."""
        now = self.clock()
        next_id = (
            sa.select(jobs.c.id).where(jobs.c.status == JobStatus.pending.value)
            .order_by(*self._claim_order()).limit(1)
            .with_for_update(skip_locked=True)  # PostgreSQL; SQLite serialises by BEGIN IMMEDIATE
            .scalar_subquery()
        )
        stmt = (
            jobs.update()
            .where(jobs.c.id == next_id, jobs.c.status == JobStatus.pending.value)
            .values(status=JobStatus.processing.value, worker_id=worker_id, attempt=jobs.c.attempt + 1,
                    started_at=now, lease_expires_at=now + self.lease_seconds, updated_at=now,
                    message="started", error=None)
            .returning(*jobs.c)
        )
        with write_tx(self.engine) as conn:
            row = conn.execute(stmt).first()
            if row:
                emit_status(conn, row, now)
                count_transition(conn, row)
        return Job.from_row(row) if row else None

    def heartbeat(self, job: Job, event_extra: dict[str, Any] | None = None, **progress: Any) -> Heartbeat:
        """Renew the lease, optionally with progress fields (then a `progress` event is logged,
        with `event_extra` such as the ETA). Fenced by worker_id + attempt."""
        now = self.clock()
        values = {"lease_expires_at": now + self.lease_seconds, "updated_at": now, **progress}
        with write_tx(self.engine) as conn:
            row = conn.execute(_fenced(job).values(**values).returning(*jobs.c)).first()
            if row is not None and "progress" in progress:
                emit(conn, row, "progress", now, extra=event_extra)
        if row is None:
            return Heartbeat.lost
        return Heartbeat.cancel_requested if row.cancel_requested else Heartbeat.ok

    def complete(self, job: Job, result: dict[str, Any], seed: int | None) -> bool:
        return self._finish(job, JobStatus.completed, progress=100.0, result=result, seed=seed,
                            message="completed")

    def fail(self, job: Job, error: str) -> bool:
        return self._finish(job, JobStatus.failed, error=error[:4000], message="failed")

    def mark_cancelled(self, job: Job) -> bool:
        return self._finish(job, JobStatus.cancelled, message="cancelled while running")

    def release(self, job: Job, reason: str) -> bool:
        """Give a job back to the queue on a clean shutdown; the attempt is not counted."""
        now = self.clock()
        with write_tx(self.engine) as conn:
            row = conn.execute(
                _fenced(job).values(status=JobStatus.pending.value, worker_id=None, lease_expires_at=None,
                                    attempt=jobs.c.attempt - 1, updated_at=now, message=reason,
                                    progress=0.0, step=None, section=None)
                .returning(*jobs.c)
            ).first()
            if row is not None:
                emit_status(conn, row, now)
        return row is not None

    def _finish(self, job: Job, status: JobStatus, **values: Any) -> bool:
        now = self.clock()
        with write_tx(self.engine) as conn:
            row = conn.execute(
                _fenced(job).values(status=status.value, finished_at=now, updated_at=now,
                                    lease_expires_at=None, **values)
                .returning(*jobs.c)
            ).first()
            if row is not None:
                emit_status(conn, row, now)
                count_transition(conn, row)
        return row is not None

    # -- the client's side -------------------------------------------------------------------

    def cancel(self, job_id: str, owner: str | None = None) -> Job:
        """Pending: cancelled at once. Processing: flagged; the worker stops at its next step.
        Finished: unchanged. Calling it twice is harmless. Another owner's job: JobNotFound."""
        now = self.clock()
        with write_tx(self.engine) as conn:
            for row in conn.execute(
                jobs.update().where(jobs.c.id == job_id, _mine(owner), jobs.c.status == JobStatus.pending.value)
                .values(status=JobStatus.cancelled.value, finished_at=now, updated_at=now,
                        message="cancelled before it started")
                .returning(*jobs.c)
            ).all():
                emit_status(conn, row, now)
            for row in conn.execute(
                jobs.update().where(jobs.c.id == job_id, _mine(owner), jobs.c.status == JobStatus.processing.value,
                                    jobs.c.cancel_requested.is_(False))
                .values(cancel_requested=True, updated_at=now, message="cancel requested")
                .returning(*jobs.c)
            ).all():
                emit(conn, row, "status", now)
        return self.get(job_id, owner)

    # -- the reaper --------------------------------------------------------------------------

    def reap(self) -> list[str]:
        """Return jobs whose lease ran out to the queue, or fail them when attempts are spent."""
        now = self.clock()
        expired = sa.and_(jobs.c.status == JobStatus.processing.value, jobs.c.lease_expires_at < now)
        done = {"finished_at": now, "updated_at": now, "lease_expires_at": None}
        rounds = [
            (sa.and_(expired, jobs.c.cancel_requested.is_(True)),
             {**done, "status": JobStatus.cancelled.value, "message": "cancelled; its worker stopped answering"}),
            (sa.and_(expired, jobs.c.attempt >= jobs.c.max_attempts),
             {**done, "status": JobStatus.failed.value, "error": "worker lost: no attempts left",
              "message": "failed"}),
            (expired,
             {"status": JobStatus.pending.value, "worker_id": None, "lease_expires_at": None, "updated_at": now,
              "message": "requeued: its worker stopped answering", "progress": 0.0, "step": None,
              "section": None}),
        ]
        return self._apply_rounds(rounds, now)

    def next_lease_expiry(self) -> float | None:
        """When the earliest running job's lease runs out (None: nothing runs): the reaper sleeps until then."""
        with read_tx(self.engine) as conn:
            first = conn.execute(sa.select(sa.func.min(jobs.c.lease_expires_at))
                                 .where(jobs.c.status == JobStatus.processing.value)).scalar_one()
        return None if first is None else float(first)

    def worker_killed(self, worker_id: str, reason: str, *, give_up_after: int = 2) -> list[str]:
        """A worker died by a signal: its job is requeued at once with the reason, or failed with it
        when this was the job's ``give_up_after``-th such death or its attempts are spent. A job
        that runs its machine out of memory is not retried into the same death again and again."""
        now = self.clock()
        held = sa.and_(jobs.c.status == JobStatus.processing.value, jobs.c.worker_id == worker_id)
        deaths = jobs.c.signal_deaths + 1
        done = {"finished_at": now, "updated_at": now, "lease_expires_at": None, "signal_deaths": deaths}
        rounds = [
            (sa.and_(held, jobs.c.cancel_requested.is_(True)),
             {**done, "status": JobStatus.cancelled.value, "message": f"cancelled; {reason}"}),
            (sa.and_(held, deaths >= give_up_after),
             {**done, "status": JobStatus.failed.value, "message": "failed",
              "error": f"{reason}; not retried: its worker died this way {give_up_after} times"}),
            (sa.and_(held, jobs.c.attempt >= jobs.c.max_attempts),
             {**done, "status": JobStatus.failed.value, "message": "failed", "error": f"{reason}; no attempts left"}),
            (held,
             {"status": JobStatus.pending.value, "worker_id": None, "lease_expires_at": None, "updated_at": now,
              "signal_deaths": deaths, "error": reason, "message": f"requeued: {reason}", "progress": 0.0,
              "step": None, "section": None}),
        ]
        return self._apply_rounds(rounds, now)

    def _apply_rounds(self, rounds: list[tuple[Any, dict[str, Any]]], now: float) -> list[str]:
        """Conditional UPDATEs in order, in one transaction (a row matched by an earlier round no longer
        matches a later one); each changed row gets its status event and its metric totals."""
        changed: list[str] = []
        with write_tx(self.engine) as conn:
            for where, values in rounds:
                for row in conn.execute(jobs.update().where(where).values(**values).returning(*jobs.c)).all():
                    emit_status(conn, row, now)
                    count_transition(conn, row)
                    changed.append(row.id)
        return changed

    def set_preview(self, job: Job, relative_path: str) -> Heartbeat:
        """Record the newest preview image (fenced, renews the lease) and log a `preview` event."""
        now = self.clock()
        with write_tx(self.engine) as conn:
            row = conn.execute(
                _fenced(job).values(preview=relative_path, updated_at=now,
                                    lease_expires_at=now + self.lease_seconds)
                .returning(*jobs.c)
            ).first()
            if row is not None:
                emit(conn, row, "preview", now)
        if row is None:
            return Heartbeat.lost
        return Heartbeat.cancel_requested if row.cancel_requested else Heartbeat.ok

    def delete(self, job_id: str) -> None:
        with write_tx(self.engine) as conn:
            conn.execute(webhook_deliveries.delete().where(webhook_deliveries.c.job_id == job_id))
            conn.execute(job_events.delete().where(job_events.c.job_id == job_id))
            conn.execute(jobs.delete().where(jobs.c.id == job_id))

    # -- workers -----------------------------------------------------------------------------

    def worker_seen(self, worker_id: str, *, state: str, pid: int, hostname: str, preset: str | None,
                    current_job_id: str | None = None, device: str | None = None,
                    visible_devices: str | None = None) -> None:
        now = self.clock()
        values = {"state": state, "last_seen_at": now, "current_job_id": current_job_id,
                  "preset": preset, "device": device, "visible_devices": visible_devices}
        with write_tx(self.engine) as conn:
            n = conn.execute(workers.update().where(workers.c.id == worker_id).values(**values)).rowcount
            if n == 0:
                conn.execute(workers.insert().values(id=worker_id, pid=pid, hostname=hostname,
                                                     started_at=now, **values))

    def live_workers(self, within_seconds: float) -> list[dict[str, Any]]:
        since = self.clock() - within_seconds
        with read_tx(self.engine) as conn:
            rows = conn.execute(
                sa.select(workers).where(workers.c.last_seen_at >= since, workers.c.state != "stopped")
                .order_by(workers.c.started_at)
            ).all()
        return [dict(r._mapping) for r in rows]


def _fenced(job: Job) -> sa.Update:
    return jobs.update().where(
        jobs.c.id == job.id,
        jobs.c.status == JobStatus.processing.value,
        jobs.c.worker_id == job.worker_id,
        jobs.c.attempt == job.attempt,
    )

