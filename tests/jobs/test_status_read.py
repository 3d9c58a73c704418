"""`GET /status` of a pending job reads no pending row: its statements are the same at any depth, each
served by an index (EXPLAIN), and its ETA is position × the learned mean duration + its own time."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from framepack_api.jobs.eta import PaceCache
from framepack_api.jobs.status_read import read_status
from framepack_api.jobs.store import JobStore, NewJob
from framepack_api.jobs.tables import jobs
from framepack_api.params import JobType

# 2 steps x 1 section: work_steps == 2
PARAMS = {"steps": 2, "video_length": 0.1, "latent_window_size": 1, "resolution": 64}


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _add_pending(engine: sa.Engine, n: int, start: float) -> None:
    """n pending jobs in bulk, older than anything submitted afterwards (no aging: claim key 0)."""
    rows = [{"id": str(uuid.uuid4()), "type": "video", "status": "pending", "params": PARAMS, "inputs": {},
             "priority": 0, "created_at": start + i * 1e-3, "updated_at": start, "claim_key": 0.0}
            for i in range(n)]
    with engine.begin() as conn:
        conn.execute(jobs.insert(), rows)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE jobs" if engine.dialect.name == "postgresql" else "ANALYZE")


@contextmanager
def _statements(engine: sa.Engine) -> Iterator[list[tuple[str, Any]]]:
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


def test_pending_status_reads_the_same_statements_at_any_depth_each_along_an_index(engine: sa.Engine) -> None:
    clock = Clock(1000.0)
    store = JobStore(engine, clock=clock, aging_seconds=0.0)
    # History: one completed job of 2 steps that took 10 s (5 s per step).
    done, _ = store.submit(NewJob(JobType.video, PARAMS, {}))
    claimed = store.claim("w1")
    assert claimed is not None and claimed.id == done.id
    clock.now = 1010.0
    assert store.complete(claimed, {"video": "x.mp4"}, seed=1)
    store.worker_seen("w1", state="idle", pid=1, hostname="h", preset="tiny")
    pace = PaceCache()

    def read_last(depth: int) -> tuple[list[str], list[tuple[str, Any]]]:
        last, _ = store.submit(NewJob(JobType.video, PARAMS, {}))
        read_status(store, last.id, None, live_within=60.0, pace=pace)  # the pace is learned once, not here
        with _statements(engine) as seen:
            read = read_status(store, last.id, None, live_within=60.0, pace=pace)
        assert read.position == depth + 1
        # Nothing running, one worker: depth jobs ahead x 10 s mean, then its own 2 steps x 5 s.
        assert read.eta_seconds == depth * 10.0 + 10.0
        store.cancel(last.id)  # out of the queue again, so that the next depth is exact
        return [s for s, _ in seen], seen

    _add_pending(engine, 20, start=1.0)
    shallow, _ = read_last(20)
    _add_pending(engine, 3000, start=2.0)
    deep, seen = read_last(3020)
    assert deep == shallow  # the same statements, whatever the depth: no list of pending jobs
    touching_jobs = [(s, p) for s, p in seen if " jobs" in s]
    assert len(touching_jobs) == 4, [s for s, _ in touching_jobs]  # the row, the count, running, newest
    for statement, parameters in touching_jobs:
        if engine.dialect.name == "postgresql" and "count(" in statement:
            continue  # a count over most of the table may rightly be a Seq Scan there (test_queue_index.py)
        plan = _plan(engine, statement, parameters)
        if engine.dialect.name == "sqlite":
            assert "SEARCH jobs" in plan and "TEMP B-TREE" not in plan and "SCAN jobs" not in plan, (statement, plan)
        else:
            assert "Seq Scan" not in plan and "Sort" not in plan, (statement, plan)


def test_the_pace_is_relearned_only_when_a_newer_job_completed(engine: sa.Engine) -> None:
    clock = Clock(1000.0)
    store = JobStore(engine, clock=clock)
    pace = PaceCache()
    waiting, _ = store.submit(NewJob(JobType.video, PARAMS, {}))
    assert read_status(store, waiting.id, None, live_within=60.0, pace=pace).eta_seconds is None  # no history
    first = store.claim("w1")
    assert first is not None
    clock.now = 1004.0
    store.complete(first, {"video": "x.mp4"}, seed=1)  # 4 s: 2 s per step
    pending, _ = store.submit(NewJob(JobType.video, PARAMS, {}))
    with _statements(engine) as seen:
        eta = read_status(store, pending.id, None, live_within=60.0, pace=pace).eta_seconds
        again = read_status(store, pending.id, None, live_within=60.0, pace=pace).eta_seconds
    assert eta == again == 4.0  # nothing ahead, no worker counted as 1: its own 2 steps x 2 s
    learned = [s for s, _ in seen if "ORDER BY jobs.finished_at DESC" in s and "jobs.params" in s]
    assert len(learned) == 1  # the second read reused what the first learned
