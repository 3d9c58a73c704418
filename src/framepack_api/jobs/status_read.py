"""One job's status as `GET /status` shows it, read in one short transaction whatever the queue depth.

The job row by id; for a pending job its queue position (a count along ix_jobs_claim_key); for a
job not finished, the ETA from the live worker count, the running jobs (as many as there are
workers) and the pace learned from recent completed jobs (jobs/eta.py). No pending row is read.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from framepack_api.errors import JobNotFound
from framepack_api.jobs.db import read_tx
from framepack_api.jobs.eta import Estimator, PaceCache
from framepack_api.jobs.schema import JobStatus
from framepack_api.jobs.store import Job, JobStore, count_ahead, visible_to
from framepack_api.jobs.tables import jobs, workers


@dataclass(frozen=True)
class StatusRead:
    job: Job
    position: int | None  # 1-based, pending jobs only
    eta_seconds: float | None  # None when finished, or when nothing has completed yet to learn from


def read_status(store: JobStore, job_id: str, owner: str | None, *, live_within: float,
                pace: PaceCache) -> StatusRead:
    """JobNotFound also when the job belongs to someone other than ``owner`` (None: anyone)."""
    now = store.clock()
    with read_tx(store.engine) as conn:
        row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id, visible_to(owner))).first()
        if row is None:
            raise JobNotFound(job_id)
        job = Job.from_row(row)
        if job.status.is_terminal:
            return StatusRead(job, None, None)
        position = running = None
        if job.status is JobStatus.pending:
            position = count_ahead(conn, row.claim_key, job.created_at, job.id) + 1
            running = [Job.from_row(r) for r in conn.execute(
                sa.select(jobs).where(jobs.c.status == JobStatus.processing.value).limit(1000)).all()]
        alive = conn.execute(
            sa.select(sa.func.count()).select_from(workers)
            .where(workers.c.last_seen_at >= now - live_within, workers.c.state != "stopped")
        ).scalar_one()
        learned = pace.current(conn)
    eta = Estimator(learned).eta(job, position=position, workers=int(alive), running=running or [], now=now)
    return StatusRead(job, position, eta)
