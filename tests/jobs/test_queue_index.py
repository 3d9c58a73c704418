"""Claim and queue position are served by ix_jobs_claim_key on both databases, whatever the depth.

The statements checked are the ones the store really sends (captured while it runs), explained by
the database itself: EXPLAIN QUERY PLAN on SQLite, EXPLAIN on PostgreSQL after ANALYZE.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from framepack_api.jobs.schema import JobStatus
from framepack_api.jobs.store import JobStore, NewJob
from framepack_api.jobs.tables import jobs
from framepack_api.params import JobType

DEPTH = 4000  # enough that PostgreSQL's planner prefers an index to a scan; inserted in one go


def _fill(engine: sa.Engine, n: int) -> None:
    """n pending jobs inserted in bulk (not through submit), with keys as submit would give them."""
    rows = [{"id": str(uuid.uuid4()), "type": "video", "status": "pending", "params": {}, "inputs": {},
             "priority": i % 3, "created_at": 1000.0 + i, "updated_at": 1000.0 + i,
             "claim_key": 1000.0 + i - (i % 3) * 30.0} for i in range(n)]
    done = [{**r, "id": str(uuid.uuid4()), "status": "completed"} for r in rows[: n // 2]]
    with engine.begin() as conn:
        conn.execute(jobs.insert(), rows + done)
    # What autovacuum would have done by then: statistics, and (PostgreSQL) the visibility map that
    # lets a count be an index-only scan.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE jobs" if engine.dialect.name == "postgresql" else "ANALYZE")


@contextmanager
def _captured(engine: sa.Engine) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def hook(_conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, _many: bool) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", hook)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", hook)


def _plan(engine: sa.Engine, statement: str, parameters: Any) -> str:
    prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute(prefix + statement, parameters)
        text = "\n".join(" ".join(str(c) for c in row) for row in cur.fetchall())
        raw.rollback()
        return text
    finally:
        raw.close()


def _plans_of(engine: sa.Engine, action: Callable[[], object], needle: str) -> list[str]:
    with _captured(engine) as seen:
        action()
    matching = [(s, p) for s, p in seen if needle in s]
    assert matching, f"no statement with {needle!r} among {[s for s, _ in seen]}"
    return [_plan(engine, s, p) for s, p in matching]


def _assert_index_served(engine: sa.Engine, plan: str) -> None:
    assert "ix_jobs_claim_key" in plan, plan
    if engine.dialect.name == "sqlite":
        assert "TEMP B-TREE" not in plan and "SCAN jobs\n" not in plan + "\n", plan
    else:
        assert "Seq Scan" not in plan and "Sort" not in plan, plan


def test_claim_and_position_use_the_claim_index(engine: sa.Engine) -> None:
    _fill(engine, DEPTH)
    store = JobStore(engine, type_boost={JobType.image: 10}, aging_seconds=30.0, clock=lambda: 1000.0 + DEPTH)
    last, _ = store.submit(NewJob(JobType.video, {}, {}))
    assert store.position(last) == DEPTH + 1  # behind every bulk row: its key is the largest

    urgent, _ = store.submit(NewJob(JobType.image, {}, {}, priority=200))
    assert store.position(urgent) == 1
    for plan in _plans_of(engine, lambda: store.position(urgent), "count("):
        _assert_index_served(engine, plan)
    if engine.dialect.name == "sqlite":
        # PostgreSQL's planner rightly prefers a sequential scan when the count covers most of
        # the table (here: every pending row); SQLite still counts along the index.
        for plan in _plans_of(engine, lambda: store.position(last), "count("):
            _assert_index_served(engine, plan)
    claim_plans = _plans_of(engine, lambda: store.claim("w1"), "UPDATE jobs")
    for plan in claim_plans:
        _assert_index_served(engine, plan)
    # The plan was explained after the claim ran: the claim itself took the head of the queue.
    with engine.connect() as conn:
        first = conn.execute(sa.select(jobs.c.id, jobs.c.priority, jobs.c.created_at)
                             .where(jobs.c.status == JobStatus.processing.value)).one()
    assert first.id == urgent.id  # image boost + priority 200 put it ahead of every bulk row
