"""The job event log: appended in the same transaction as the change it describes.

Event ids are the log's primary key, so a client resumes a stream with `id > Last-Event-ID`, and
events reach clients wherever the worker runs. Events that a job's webhook asked for are copied
into the webhook outbox in that same transaction, so a crash can lose neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from framepack_api.jobs.db import read_tx
from framepack_api.jobs.notify import announce
from framepack_api.jobs.tables import job_events, jobs, webhook_deliveries

TERMINAL_KINDS = frozenset({"completed", "failed", "cancelled"})
EVENT_KINDS = frozenset({"status", "progress", "preview", *TERMINAL_KINDS})


@dataclass(frozen=True)
class Event:
    id: int
    job_id: str
    kind: str
    data: dict[str, Any]
    created_at: float

    @property
    def is_terminal(self) -> bool:
        return self.kind in TERMINAL_KINDS


def snapshot(row: Any) -> dict[str, Any]:
    """What every event carries about its job: enough to redraw a progress bar."""
    m = row._mapping
    return {
        "job_id": m["id"], "type": m["type"], "status": m["status"], "progress": m["progress"],
        "step": m["step"], "total_steps": m["total_steps"], "section": m["section"],
        "total_sections": m["total_sections"], "message": m["message"], "error": m["error"],
        "seed": m["seed"], "preview_url": f"/preview/{m['id']}" if m["preview"] else None,
    }


def emit(conn: Connection, row: Any, kind: str, now: float, extra: dict[str, Any] | None = None) -> int:
    data = {**snapshot(row), **(extra or {})}
    event_id = int(conn.execute(
        job_events.insert().values(job_id=row.id, kind=kind, data=data, created_at=now)
        .returning(job_events.c.id)
    ).scalar_one())
    wanted = row.webhook_events or TERMINAL_KINDS
    wake = ["event", "job"] if row.status == "pending" else ["event"]
    if row.webhook_url and kind in wanted:
        wake.append("webhook")
        payload = {"id": event_id, "type": f"job.{kind}", "created_at": now, "data": data}
        conn.execute(webhook_deliveries.insert().values(
            job_id=row.id, event_id=event_id, url=row.webhook_url, payload=payload, status="pending",
            attempts=0, next_attempt_at=now, created_at=now))
    announce(conn, wake)  # delivered on commit (notify.py)
    return event_id


def emit_status(conn: Connection, row: Any, now: float) -> None:
    """A transition: a `status` event, and the terminal event when it ends the job."""
    emit(conn, row, "status", now)
    if row.status in TERMINAL_KINDS:
        emit(conn, row, row.status, now)


def read_events(engine: Engine, *, after_id: int = 0, job_id: str | None = None,
                limit: int = 500, owner: str | None = None) -> list[Event]:
    """Events after ``after_id``; of one job, and of ``owner``'s jobs only unless owner is None."""
    query = sa.select(job_events).where(job_events.c.id > after_id).order_by(job_events.c.id).limit(limit)
    if job_id is not None:
        query = query.where(job_events.c.job_id == job_id)
    if owner is not None:
        query = query.where(job_events.c.job_id.in_(sa.select(jobs.c.id).where(jobs.c.owner == owner)))
    with read_tx(engine) as conn:
        rows = conn.execute(query).all()
    return [Event(r.id, r.job_id, r.kind, r.data, r.created_at) for r in rows]


def read_events_with_owner(engine: Engine, *, after_id: int, limit: int = 500) -> list[tuple[Event, str | None]]:
    """Every job's events after ``after_id`` with the owner of their job (None when the row is
    gone): the shared reader's one query, filtered per stream in memory."""
    query = (sa.select(job_events, jobs.c.owner)
             .select_from(job_events.outerjoin(jobs, jobs.c.id == job_events.c.job_id))
             .where(job_events.c.id > after_id).order_by(job_events.c.id).limit(limit))
    with read_tx(engine) as conn:
        rows = conn.execute(query).all()
    return [(Event(r.id, r.job_id, r.kind, r.data, r.created_at), r.owner) for r in rows]


def last_event_id(engine: Engine) -> int:
    with read_tx(engine) as conn:
        return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(job_events.c.id), 0))).scalar_one())
