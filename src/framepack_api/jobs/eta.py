"""Queue ETA from what recent jobs really took, per kind and size, without reading the queue.

A job's work is counted in sampling steps (steps × sections for video); the newest completed jobs
(a bounded sample, read along ix_jobs_finished) give seconds per step per type and size, and the
mean duration of a job. A pending job's ETA is then

    (remaining time of the running jobs + jobs ahead × mean duration) / workers + its own duration

where "jobs ahead" is its queue position: no pending row is read, so the cost does not grow with
the depth of the queue. The learned pace is kept per process and recomputed only when a newer
completed job exists (one index lookup tells).
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from framepack_api.jobs.db import read_tx
from framepack_api.jobs.schema import JobStatus
from framepack_api.jobs.store import Job
from framepack_api.jobs.tables import jobs
from framepack_api.params import total_sections

HISTORY = 50


def work_steps(job: Job) -> int:
    p = job.params
    steps = int(p.get("steps", 25))
    if "video_length" in p:
        return steps * total_sections(float(p["video_length"]), int(p.get("latent_window_size", 9)))
    return steps * max(1, len(p.get("prompts", [])) or 1)


def _size_key(job: Job) -> tuple[str, Any]:
    p = job.params
    return job.type.value, p.get("resolution") or (p.get("width"), p.get("height"))


@dataclass(frozen=True)
class Pace:
    """Seconds per sampling step by (type, size), the median over all, and the mean job duration."""

    rates: dict[tuple[str, Any], float]
    fallback: float | None
    mean_duration: float | None

    @classmethod
    def learn(cls, finished: list[Job]) -> Pace:
        per_key: dict[tuple[str, Any], list[float]] = {}
        everything: list[float] = []
        durations: list[float] = []
        for job in finished:
            if job.status is not JobStatus.completed or not job.started_at or not job.finished_at:
                continue
            took = job.finished_at - job.started_at
            rate = took / max(work_steps(job), 1)
            per_key.setdefault(_size_key(job), []).append(rate)
            everything.append(rate)
            durations.append(took)
        return cls(rates={key: statistics.median(v) for key, v in per_key.items()},
                   fallback=statistics.median(everything) if everything else None,
                   mean_duration=statistics.fmean(durations) if durations else None)


# Along ix_jobs_finished (status, finished_at); a completed job always has finished_at, but the NULL
# test keeps PostgreSQL (NULLs first when descending) from putting a hand-made row on top.
_completed = sa.and_(jobs.c.status == JobStatus.completed.value, jobs.c.finished_at.is_not(None))


def newest_completed() -> tuple[Any, Any]:
    """Scalar subqueries: finished_at and id of the newest completed job (the top of ix_jobs_finished)."""
    newest = jobs.alias("newest")

    def top(column: Any) -> Any:
        return (sa.select(column).where(newest.c.status == JobStatus.completed.value, newest.c.finished_at.is_not(None))
                .order_by(newest.c.finished_at.desc()).limit(1).scalar_subquery())

    return top(newest.c.finished_at), top(newest.c.id)


def recent_completed(conn: Connection, limit: int = HISTORY) -> list[Job]:
    rows = conn.execute(
        sa.select(jobs).where(_completed).order_by(jobs.c.finished_at.desc()).limit(limit)
    ).all()
    return [Job.from_row(r) for r in rows]


class PaceCache:
    """One process's learned pace, relearned only when the newest completed job changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._marker: tuple[float, str] | None = None
        self._pace = Pace({}, None, None)

    def current(self, marker: tuple[float, str] | None, engine: Engine) -> Pace:
        """``marker``: the newest completed job's (finished_at, id), as the caller just read it."""
        with self._lock:
            if marker == self._marker:
                return self._pace
        if marker is None:
            pace = Pace({}, None, None)
        else:
            with read_tx(engine) as conn:
                pace = Pace.learn(recent_completed(conn))
        with self._lock:
            self._marker, self._pace = marker, pace
        return pace


class Estimator:
    def __init__(self, pace: Pace) -> None:
        self.pace = pace

    def seconds_per_step(self, job: Job) -> float | None:
        return self.pace.rates.get(_size_key(job), self.pace.fallback)

    def duration(self, job: Job) -> float | None:
        rate = self.seconds_per_step(job)
        return rate * work_steps(job) if rate is not None else None

    def remaining(self, job: Job, now: float) -> float | None:
        """Seconds until a running job finishes: its own pace once it has one, else history."""
        if job.status is JobStatus.processing and job.started_at and job.progress > 1:
            elapsed = now - job.started_at
            return max(0.0, elapsed * (100 - job.progress) / job.progress)
        return self.duration(job)

    def eta(self, job: Job, *, position: int | None, workers: int, running: list[Job],
            now: float | None = None) -> float | None:
        """Seconds until `job` completes; None when nothing has finished yet to learn from.

        ``position`` is the job's 1-based queue position, ``running`` the processing jobs."""
        now = time.time() if now is None else now
        if job.status.is_terminal:
            return 0.0
        if job.status is JobStatus.processing:
            return self.remaining(job, now)
        own = self.duration(job)
        busy = [self.remaining(j, now) for j in running]
        ahead = max((position or 1) - 1, 0)
        if own is None or any(b is None for b in busy) or (ahead and self.pace.mean_duration is None):
            return None
        waits = sum(b for b in busy if b is not None) + ahead * (self.pace.mean_duration or 0.0)
        return waits / max(workers, 1) + own
