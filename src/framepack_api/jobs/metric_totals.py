"""Running totals behind /metrics' counters and histograms.

Each is bumped in the transaction of the transition it counts, so it is exactly as durable as the
transition, is shared by every API process, and never goes down when jobs are deleted (by DELETE
or by retention). A scrape reads this small table instead of scanning jobs.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from framepack_api.jobs.schema import JobStatus
from framepack_api.jobs.tables import metric_totals

DURATION = "job_duration_seconds"
QUEUE = "job_queue_seconds"
FAILURES = "job_failures"
DURATION_BUCKETS: tuple[float, ...] = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600)
QUEUE_BUCKETS: tuple[float, ...] = (0.1, 0.5, 1, 5, 15, 30, 60, 300, 900, 3600)
HISTOGRAMS = {DURATION: DURATION_BUCKETS, QUEUE: QUEUE_BUCKETS}


def bump(conn: Connection, name: str, label: str, amount: float) -> None:
    """value += amount, creating the row; an upsert, so two writers never race on the INSERT."""
    insert: Any = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(metric_totals)
    stmt = insert.values(name=name, label=label, value=amount)
    conn.execute(stmt.on_conflict_do_update(index_elements=["name", "label"],
                                            set_={"value": metric_totals.c.value + stmt.excluded.value}))


def observe(conn: Connection, name: str, seconds: float) -> None:
    """One histogram observation: each bucket it falls in (stored cumulative), count and sum."""
    for bound in HISTOGRAMS[name]:
        if seconds <= bound:
            bump(conn, name, str(bound), 1)
    bump(conn, name, "count", 1)
    bump(conn, name, "sum", seconds)


def count_transition(conn: Connection, row: Any) -> None:
    """Count what a transition (the row as written) adds to the totals.

    The queue histogram observes a job's first counted start (attempt 1); a job released by a clean
    shutdown starts at attempt 1 again and is observed again.
    """
    status = row.status
    if status == JobStatus.completed.value and row.started_at is not None and row.finished_at is not None:
        observe(conn, DURATION, float(row.finished_at) - float(row.started_at))
    elif status == JobStatus.failed.value:
        bump(conn, FAILURES, failure_kind(row.error), 1)
    elif status == JobStatus.processing.value and row.attempt == 1 and row.started_at is not None:
        observe(conn, QUEUE, float(row.started_at) - float(row.created_at))


def read(conn: Connection) -> dict[str, dict[str, float]]:
    """Every total, by name then label."""
    out: dict[str, dict[str, float]] = {}
    for name, label, value in conn.execute(sa.select(metric_totals)).all():
        out.setdefault(name, {})[label] = float(value)
    return out


def failure_kind(error: str | None) -> str:
    if not error:
        return "unknown"
    if error.startswith("worker lost"):
        return "worker_lost"
    head = error.split(":", 1)[0].strip()
    # Labels are bounded (64 characters, identifiers only) so an error text cannot grow the table.
    return head[:64] if head.isidentifier() else "other"
