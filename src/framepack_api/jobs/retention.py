"""Retention of finished jobs' files, rows and events, and the removal of dead attempts' work dirs.

One retention round runs in one process at a time, whatever the number of API processes and
whatever the database: the round first moves the ``retention`` row of ``maintenance_leases``
forward with a conditional UPDATE (an ordinary write on SQLite and PostgreSQL alike), and renews
it between batches; a process that finds the lease held by another skips the round.

Order of a removal, chosen so that a crash never leaves a row pointing at missing files: the row
is marked (``files_expired_at``) first, then the files go. A crash between the two leaves files
without a reader, and those are removed again when the row itself is deleted.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from framepack_api.jobs.db import read_tx, write_tx
from framepack_api.jobs.schema import JobStatus
from framepack_api.jobs.tables import (
    job_events,
    jobs,
    maintenance_leases,
    openai_videos,
    training_videos,
    webhook_deliveries,
)
from framepack_api.settings import Settings
from framepack_api.storage import Storage

log = logging.getLogger(__name__)

LEASE_NAME = "retention"
BATCH = 200
# Events a running job writes several times a second; transitions are kept until the row goes.
NOISY_EVENT_KINDS = ("progress", "preview")
FINISHED_DELIVERIES = ("delivered", "dead")
TERMINAL = [s.value for s in (JobStatus.completed, JobStatus.failed, JobStatus.cancelled)]
_WORK_DIR = re.compile(r"^(?P<job>[0-9A-Za-z-]{1,64})-(?P<attempt>\d+)$")


@dataclass(frozen=True)
class Policy:
    """Ages in seconds after which things go; 0 keeps them forever."""

    files_seconds: float = 0.0
    jobs_seconds: float = 0.0
    events_seconds: float = 0.0
    interval_seconds: float = 600.0


@dataclass
class RoundReport:
    ran: bool = False
    files_removed: list[str] = field(default_factory=list)
    jobs_deleted: list[str] = field(default_factory=list)
    events_deleted: int = 0
    deliveries_deleted: int = 0


def retention_policy(settings: Settings) -> Policy:
    return Policy(files_seconds=settings.retention_files_seconds, jobs_seconds=settings.retention_jobs_seconds,
                  events_seconds=settings.retention_events_seconds,
                  interval_seconds=settings.retention_interval_seconds)


class Retention:
    def __init__(self, engine: Engine, storage: Storage, policy: Policy, *, holder: str,
                 clock: Callable[[], float]) -> None:
        self.engine, self.storage, self.policy = engine, storage, policy
        self.holder, self.clock = holder, clock

    # -- the lease -------------------------------------------------------------------------

    def acquire(self) -> bool:
        """Take the round for ``interval_seconds`` unless another process holds it."""
        return self._move_lease(sa.or_(maintenance_leases.c.expires_at <= self.clock(),
                                       maintenance_leases.c.holder == self.holder))

    def _renew(self) -> bool:
        return self._move_lease(maintenance_leases.c.holder == self.holder)

    def _move_lease(self, condition: Any) -> bool:
        now = self.clock()
        with write_tx(self.engine) as conn:
            moved = conn.execute(
                maintenance_leases.update()
                .where(maintenance_leases.c.name == LEASE_NAME, condition)
                .values(holder=self.holder, expires_at=now + self.policy.interval_seconds)
            ).rowcount
        return bool(moved)

    # -- one round -------------------------------------------------------------------------

    def run_round(self) -> RoundReport:
        report = RoundReport()
        if not self.acquire():
            return report
        report.ran = True
        now = self.clock()
        p = self.policy
        # Each step loops over batches and renews the lease between them, so a long backlog never
        # lets a second process start the same work.
        if p.files_seconds > 0:
            while self._expire_files(now - p.files_seconds, report) == BATCH and self._renew():
                pass
        if p.jobs_seconds > 0:
            while self._delete_jobs(now - p.jobs_seconds, report) == BATCH and self._renew():
                pass
        if p.events_seconds > 0:
            while self._delete_events(now - p.events_seconds, report) == BATCH and self._renew():
                pass
        return report

    def _finished_before(self, cutoff: float) -> Any:
        # The training cache has its own lifetime (its TTL and DELETE /cache); its videos are not ours.
        return sa.and_(jobs.c.status.in_(TERMINAL), jobs.c.finished_at < cutoff,
                       jobs.c.id.not_in(sa.select(training_videos.c.job_id)))

    def _expire_files(self, cutoff: float, report: RoundReport) -> int:
        now = self.clock()
        with write_tx(self.engine) as conn:
            ids = conn.execute(
                sa.select(jobs.c.id).where(self._finished_before(cutoff), jobs.c.files_expired_at.is_(None))
                .order_by(jobs.c.finished_at).limit(BATCH)
            ).scalars().all()
            if ids:
                conn.execute(jobs.update().where(jobs.c.id.in_(ids), jobs.c.status.in_(TERMINAL))
                             .values(files_expired_at=now, preview=None))
        for job_id in ids:
            self.storage.remove_job(job_id)
        report.files_removed += ids
        return len(ids)

    def _delete_jobs(self, cutoff: float, report: RoundReport) -> int:
        now = self.clock()
        with write_tx(self.engine) as conn:
            ids = conn.execute(
                sa.select(jobs.c.id).where(self._finished_before(cutoff)).order_by(jobs.c.finished_at)
                .limit(BATCH)
            ).scalars().all()
            if ids:
                conn.execute(jobs.update().where(jobs.c.id.in_(ids)).values(files_expired_at=now))
        for job_id in ids:
            self.storage.remove_job(job_id)
        if ids:
            with write_tx(self.engine) as conn:
                conn.execute(webhook_deliveries.delete().where(webhook_deliveries.c.job_id.in_(ids)))
                conn.execute(job_events.delete().where(job_events.c.job_id.in_(ids)))
                conn.execute(openai_videos.delete().where(openai_videos.c.job_id.in_(ids)))
                conn.execute(jobs.delete().where(jobs.c.id.in_(ids), jobs.c.status.in_(TERMINAL)))
        report.jobs_deleted += ids
        return len(ids)

    def _delete_events(self, cutoff: float, report: RoundReport) -> int:
        old_events = (sa.select(job_events.c.id)
                      .where(job_events.c.created_at < cutoff, job_events.c.kind.in_(NOISY_EVENT_KINDS))
                      .order_by(job_events.c.id).limit(BATCH))
        old_deliveries = (sa.select(webhook_deliveries.c.id)
                          .where(webhook_deliveries.c.created_at < cutoff,
                                 webhook_deliveries.c.status.in_(FINISHED_DELIVERIES))
                          .order_by(webhook_deliveries.c.id).limit(BATCH))
        with write_tx(self.engine) as conn:
            # IN over a selected list (not a subquery with LIMIT), which both dialects accept.
            event_ids = conn.execute(old_events).scalars().all()
            delivery_ids = conn.execute(old_deliveries).scalars().all()
            if event_ids:
                conn.execute(job_events.delete().where(job_events.c.id.in_(event_ids)))
            if delivery_ids:
                conn.execute(webhook_deliveries.delete().where(webhook_deliveries.c.id.in_(delivery_ids)))
        report.events_deleted += len(event_ids)
        report.deliveries_deleted += len(delivery_ids)
        return max(len(event_ids), len(delivery_ids))


def sweep_work_dirs(engine: Engine, storage: Storage, *, min_age_seconds: float,
                    clock: Callable[[], float] = time.time) -> list[str]:
    """Remove ``work/<job>-<attempt>`` directories whose attempt is not running any more: a worker
    killed mid-job never reaches its own cleanup. Run by the reaper, after it has requeued jobs.

    A claim commits ``attempt`` before its worker creates the directory, so a directory listed
    here whose attempt is live is seen live. A released attempt's number is used again by the next
    claim, so a directory also has to be untouched for ``min_age_seconds`` (a killed attempt's
    has been, for a whole lease) before it goes: a freshly re-created one is never taken.
    """
    root = storage.root / "work"
    found: dict[str, list[tuple[int, str]]] = {}
    for entry in root.iterdir() if root.is_dir() else ():
        match = _WORK_DIR.match(entry.name)
        if match and entry.is_dir():
            found.setdefault(match["job"], []).append((int(match["attempt"]), entry.name))
    if not found:
        return []
    with read_tx(engine) as conn:
        rows = conn.execute(sa.select(jobs.c.id, jobs.c.status, jobs.c.attempt)
                            .where(jobs.c.id.in_(list(found)))).all()
    live = {r.id: r.attempt for r in rows if r.status == JobStatus.processing.value}
    removed = []
    for job_id, attempts in found.items():
        for attempt, name in attempts:
            if live.get(job_id) != attempt and _untouched_for(root / name, min_age_seconds, clock()):
                storage.discard_work(job_id, attempt)
                removed.append(name)
    return removed


def discard_dead_attempts(engine: Engine, storage: Storage, job_ids: list[str]) -> list[str]:
    """Remove the results that dead attempts of these jobs uploaded but never published: a worker
    killed between its upload and its fenced completion. Run by the reaper for the jobs it requeued
    or failed; a later completion's ``keep_only_attempt`` and retention's ``remove_job`` catch the rest.

    Only attempts up to the one the row names are touched, and never a live or a published one: a
    claim after this read takes a higher attempt number, so its fresh upload is never taken.
    """
    if not job_ids:
        return []
    with read_tx(engine) as conn:
        rows = conn.execute(sa.select(jobs.c.id, jobs.c.status, jobs.c.attempt, jobs.c.result)
                            .where(jobs.c.id.in_(job_ids))).all()
    removed = []
    for row in rows:
        published = _published_attempt(row.id, row.result)
        newest_dead = row.attempt - 1 if row.status == JobStatus.processing.value else row.attempt
        for attempt in storage.output_attempts(row.id):
            if attempt <= newest_dead and attempt != published:
                storage.discard_result(row.id, attempt)
                removed.append(f"{row.id}/{attempt}")
    return removed


def _published_attempt(job_id: str, result: dict[str, Any] | None) -> int | None:
    for value in (result or {}).values():
        if isinstance(value, str) and value.startswith(f"outputs/{job_id}/"):
            attempt = value.split("/")[2]
            if attempt.isdigit():
                return int(attempt)
    return None


def _untouched_for(path: Path, seconds: float, now: float) -> bool:
    try:
        return now - path.stat().st_mtime >= seconds
    except FileNotFoundError:  # its own worker removed it meanwhile
        return False
