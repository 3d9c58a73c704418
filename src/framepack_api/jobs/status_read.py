"""One job's status as `GET /status` shows it, in one statement whatever the queue depth.

One SELECT returns the job row with, as scalar subqueries, what its status needs besides: for a
pending job its queue position (jobs/rank.py: block counts before its block, and a count along
ix_jobs_claim_key inside it, bounded by the block size); for a job not finished, the live
worker count and the newest completed job (which says whether the learned pace is still current).
A pending job's ETA also needs the running jobs (as many as there are workers): a second SELECT.
No pending row is ever read.

The statements are SQLAlchemy Core, compiled once per dialect and run on a pooled DBAPI connection:
this is the most requested route, and SQLAlchemy's per-execution work (statement construction,
cache key, result processing, a BEGIN/COMMIT around one SELECT) cost several times the read itself.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from framepack_api.errors import JobNotFound
from framepack_api.jobs import rank
from framepack_api.jobs.eta import Estimator, PaceCache, newest_completed
from framepack_api.jobs.schema import JobStatus
from framepack_api.jobs.store import Job, JobStore
from framepack_api.jobs.tables import jobs, workers

_JSON_COLUMNS = frozenset(c.name for c in jobs.c if isinstance(c.type, sa.JSON))
_PENDING, _PROCESSING = JobStatus.pending.value, JobStatus.processing.value


@dataclass(frozen=True)
class StatusRead:
    job: Job
    position: int | None  # 1-based, pending jobs only
    eta_seconds: float | None  # None when finished, or when nothing has completed yet to learn from


def _status_select(by_owner: bool) -> sa.Select[Any]:
    ahead = rank.ahead((jobs.c.claim_key, jobs.c.created_at, jobs.c.id))
    alive = (sa.select(sa.func.count()).select_from(workers)
             .where(workers.c.last_seen_at >= sa.bindparam("since", type_=sa.Float), workers.c.state != "stopped")
             .scalar_subquery())
    newest_at, newest_id = newest_completed()
    unfinished = sa.or_(jobs.c.status == _PENDING, jobs.c.status == _PROCESSING)
    # CASE: the subqueries run only for the jobs that need them (a finished job reads its row only).
    where = [jobs.c.id == sa.bindparam("job_id", type_=sa.String)]
    if by_owner:
        where.append(jobs.c.owner == sa.bindparam("owner", type_=sa.String))
    return sa.select(
        *jobs.c,
        sa.case((jobs.c.status == _PENDING, ahead), else_=None).label("x_ahead"),
        sa.case((unfinished, alive), else_=None).label("x_alive"),
        sa.case((unfinished, newest_at), else_=None).label("x_newest_at"),
        sa.case((unfinished, newest_id), else_=None).label("x_newest_id"),
    ).where(*where)


_RUNNING = sa.select(jobs).where(jobs.c.status == _PROCESSING).limit(1000)


class _Compiled:
    """A Core statement compiled for one dialect, with its parameters in the driver's form."""

    def __init__(self, statement: Any, engine: Engine) -> None:
        self.compiled = statement.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
        self.sql = str(self.compiled)
        self.positional = self.compiled.positiontup

    def params(self, values: dict[str, Any]) -> Any:
        every = self.compiled.construct_params(values)
        return [every[name] for name in self.positional] if self.positional else every


class StatusReader:
    """Per engine: the compiled statements and the learned pace."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # pysqlite hands JSON columns back as text; psycopg decodes them itself.
        self.json_as_text = engine.dialect.name == "sqlite"
        self.pace = PaceCache()
        self._lock = threading.Lock()
        self._compiled: dict[str, _Compiled] = {}

    def _statement(self, name: str) -> _Compiled:
        with self._lock:
            if name not in self._compiled:
                statement = _RUNNING if name == "running" else _status_select(by_owner=name == "by_owner")
                self._compiled[name] = _Compiled(statement, self.engine)
            return self._compiled[name]

    def _rows(self, name: str, values: dict[str, Any]) -> list[dict[str, Any]]:
        statement = self._statement(name)
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(statement.sql, statement.params(values))
            names = [d[0] for d in cursor.description]
            rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
            cursor.close()
        finally:
            raw.close()  # back to the pool, which ends the read transaction (PostgreSQL)
        return rows

    def read(self, store: JobStore, job_id: str, owner: str | None, *, live_within: float) -> StatusRead:
        """JobNotFound also when the job belongs to someone other than ``owner`` (None: anyone)."""
        now = store.clock()
        values: dict[str, Any] = {"job_id": job_id, "since": now - live_within}
        if owner is not None:
            values["owner"] = owner
        found = self._rows("all" if owner is None else "by_owner", values)
        if not found:
            raise JobNotFound(job_id)
        row = found[0]
        job = self._job(row)
        if job.status.is_terminal:
            return StatusRead(job, None, None)
        position = int(row["x_ahead"]) + 1 if job.status is JobStatus.pending else None
        running = [self._job(r) for r in self._rows("running", {})] if position is not None else []
        marker = (float(row["x_newest_at"]), str(row["x_newest_id"])) if row["x_newest_id"] is not None else None
        pace = self.pace.current(marker, self.engine)
        eta = Estimator(pace).eta(job, position=position, workers=int(row["x_alive"] or 0), running=running, now=now)
        return StatusRead(job, position, eta)

    def _job(self, row: dict[str, Any]) -> Job:
        if self.json_as_text:
            row = {k: (json.loads(v) if k in _JSON_COLUMNS and isinstance(v, str) else v) for k, v in row.items()}
        return Job.from_row(SimpleNamespace(_mapping=row))


def read_status(store: JobStore, job_id: str, owner: str | None, *, live_within: float,
                reader: StatusReader) -> StatusRead:
    return reader.read(store, job_id, owner, live_within=live_within)
