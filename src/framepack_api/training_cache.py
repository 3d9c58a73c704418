"""The training-video service's cache (seed 004): one video job per training run, in the database.

Seed 004 kept ``run_id -> video URL`` in a dict that a restart emptied. Here each run's row points
at its job; the job's own row and files are the video. A row has an optional expiry (the TTL
setting); the primary key on ``(owner, run_id)`` makes "one video per run" hold across processes,
and gives each credential its own run ids (clients pick them: 1, 2, 3 ...).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from framepack_api.jobs.db import read_tx, write_tx
from framepack_api.jobs.tables import training_videos


@dataclass(frozen=True)
class CachedRun:
    run_id: str
    job_id: str
    drill_text: str
    created_at: float
    expires_at: float | None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


class TrainingCache:
    """One owner's runs ("" while auth is off)."""

    def __init__(self, engine: Engine, *, ttl_seconds: float, clock: Callable[[], float] = time.time,
                 owner: str = "") -> None:
        self.engine = engine
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self.owner = owner

    def _key(self, run_id: str) -> Any:
        return sa.and_(training_videos.c.owner == self.owner, training_videos.c.run_id == run_id)

    def get(self, run_id: str) -> CachedRun | None:
        with read_tx(self.engine) as conn:
            row = conn.execute(sa.select(training_videos).where(self._key(run_id))).first()
        return _run(row) if row else None

    def put_if_absent(self, run_id: str, job_id: str, drill_text: str) -> CachedRun:
        """Cache ``job_id`` for the run unless another job got there first; returns the winner."""
        now = self.clock()
        run = CachedRun(run_id, job_id, drill_text, now, now + self.ttl_seconds if self.ttl_seconds else None)
        try:
            with write_tx(self.engine) as conn:
                conn.execute(training_videos.insert().values(owner=self.owner, **run.__dict__))
        except sa.exc.IntegrityError:
            winner = self.get(run_id)
            if winner is None:  # deleted again in between: try once more
                return self.put_if_absent(run_id, job_id, drill_text)
            return winner
        return run

    def remove(self, run_id: str, job_id: str | None = None) -> bool:
        """Drop the run's row (only if it still points at ``job_id``, when given)."""
        where = self._key(run_id)
        if job_id is not None:
            where = sa.and_(where, training_videos.c.job_id == job_id)
        with write_tx(self.engine) as conn:
            return bool(conn.execute(training_videos.delete().where(where)).rowcount)

    def count(self) -> int:
        with read_tx(self.engine) as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(training_videos)
                                    .where(training_videos.c.owner == self.owner)).scalar_one())


def _run(row: Any) -> CachedRun:
    m = row._mapping
    return CachedRun(m["run_id"], m["job_id"], m["drill_text"], m["created_at"], m["expires_at"])
