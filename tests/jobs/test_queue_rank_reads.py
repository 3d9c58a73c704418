"""The position of the last of a deep queue reads block counts and one block, not every job ahead.

Measured on the statement `GET /status` really runs (StatusReader's compiled SQL): on SQLite the
virtual machine instructions it executes (a progress handler), against a plain count of the jobs
ahead (the statement this replaced); on PostgreSQL the rows its plan nodes read from ``jobs``
(EXPLAIN ANALYZE: returned or removed by a filter). Both grow with the jobs ahead for a count,
and must not here.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import sqlalchemy as sa

from framepack_api.jobs.status_read import StatusReader
from framepack_api.jobs.store import JobStore, NewJob
from framepack_api.jobs.tables import jobs
from framepack_api.params import JobType

DEPTH = 10_000


def _fill(engine: sa.Engine, n: int) -> None:
    rows = [{"id": str(uuid.uuid4()), "type": "video", "status": "pending", "params": {}, "inputs": {},
             "priority": i % 3, "created_at": 1000.0 + i, "updated_at": 1000.0 + i,
             "claim_key": 1000.0 + i - (i % 3) * 30.0} for i in range(n)]
    with engine.begin() as conn:
        conn.execute(jobs.insert(), rows)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE")


def _sqlite_steps(engine: sa.Engine, sql: str, params: Any) -> int:
    """Virtual machine instructions (in hundreds) that running ``sql`` took."""
    raw = engine.raw_connection()
    steps = [0]

    def tick() -> int:
        steps[0] += 1
        return 0

    try:
        raw.driver_connection.set_progress_handler(tick, 100)  # type: ignore[union-attr]
        cur = raw.cursor()
        cur.execute(sql, params)
        cur.fetchall()
        raw.driver_connection.set_progress_handler(None, 0)  # type: ignore[union-attr]
    finally:
        raw.close()
    return steps[0]


def _pg_job_rows(engine: sa.Engine, sql: str, params: Any) -> int:
    """Rows that the plan's nodes on ``jobs`` read, over all their loops: those they returned and
    those their filters dropped (an index scan bounded on one side only filters the other)."""
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
        plan = cur.fetchone()[0]
        raw.rollback()
    finally:
        raw.close()
    plan = json.loads(plan) if isinstance(plan, str) else plan

    def walk(node: dict[str, Any]) -> int:
        dropped = node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Index Recheck", 0)
        read = node["Actual Rows"] + dropped
        own = read * node["Actual Loops"] if node.get("Relation Name") == "jobs" else 0
        return own + sum(walk(child) for child in node.get("Plans", []))

    return int(walk(plan[0]["Plan"]))


def test_last_in_line_position_reads_a_bounded_part_of_the_queue(engine: sa.Engine) -> None:
    _fill(engine, DEPTH)
    store = JobStore(engine, aging_seconds=30.0, clock=lambda: 1000.0 + DEPTH)
    last, _ = store.submit(NewJob(JobType.video, {}, {}))
    reader = StatusReader(engine)
    assert reader.read(store, last.id, None, live_within=30.0).position == DEPTH + 1
    compiled = reader._statement("all")
    params = compiled.params({"job_id": last.id, "since": 0.0})
    if engine.dialect.name == "sqlite":
        plain = ("SELECT count(*) FROM jobs WHERE status = 'pending' AND (claim_key, created_at, id) < "
                 "(SELECT claim_key, created_at, id FROM jobs WHERE id = ?)")
        counted = _sqlite_steps(engine, plain, [last.id])
        ranked = _sqlite_steps(engine, compiled.sql, params)
        assert counted > DEPTH // 100  # the plain count does step over every job ahead
        assert ranked * 5 < counted, (ranked, counted)
    else:
        rows = _pg_job_rows(engine, compiled.sql, params)
        assert rows < DEPTH // 5, rows  # a count along the index returns DEPTH rows from jobs
