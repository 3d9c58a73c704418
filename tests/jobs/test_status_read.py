"""`GET /status` of a pending job reads no pending row: its statements are the same at any depth, each
served by an index (EXPLAIN), and its ETA is position × the learned mean duration + its own time."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from framepack_api.jobs.eta import Pace
from framepack_api.jobs.status_read import StatusReader, read_status
from framepack_api.jobs.store import Job, JobStore, NewJob
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


class RecordingReader(StatusReader):
    """The real reader, recording each statement it runs with its parameters (as the driver gets them)."""

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        self.seen: list[tuple[str, Any]] = []

    def _rows(self, name: str, values: dict[str, Any]) -> list[dict[str, Any]]:
        statement = self._statement(name)
        self.seen.append((statement.sql, statement.params(values)))
        return super()._rows(name, values)


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
    reader = RecordingReader(engine)

    def read_last(depth: int) -> tuple[list[str], list[tuple[str, Any]]]:
        last, _ = store.submit(NewJob(JobType.video, PARAMS, {}))
        read_status(store, last.id, None, live_within=60.0, reader=reader)  # the pace is learned once, not here
        reader.seen.clear()
        read = read_status(store, last.id, None, live_within=60.0, reader=reader)
        seen = list(reader.seen)
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
    assert len(seen) == 2  # the row with its position, worker count and newest completed job; the running jobs
    for statement, parameters in seen:
        plan = _plan(engine, statement, parameters)
        if engine.dialect.name == "sqlite":
            assert "TEMP B-TREE" not in plan and not any(f"SCAN {t}" in plan for t in ("jobs", "ahead", "newest")), plan
        else:
            # A count over most of the table may rightly be a Seq Scan there (see test_queue_index.py).
            scans = [line for line in plan.splitlines() if "Seq Scan on jobs" in line and "ahead" not in line]
            assert not scans and "Sort" not in plan, plan
    assert "ix_jobs_claim_key" in _plan(engine, *seen[0]) or engine.dialect.name == "postgresql"


def test_the_pace_is_relearned_only_when_a_newer_job_completed(engine: sa.Engine,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(1000.0)
    store = JobStore(engine, clock=clock)
    reader = RecordingReader(engine)
    waiting, _ = store.submit(NewJob(JobType.video, PARAMS, {}))
    assert read_status(store, waiting.id, None, live_within=60.0, reader=reader).eta_seconds is None  # no history
    first = store.claim("w1")
    assert first is not None
    clock.now = 1004.0
    store.complete(first, {"video": "x.mp4"}, seed=1)  # 4 s: 2 s per step
    pending, _ = store.submit(NewJob(JobType.video, PARAMS, {}))
    learned: list[int] = []
    real_learn = Pace.learn

    def counting_learn(cls: type[Pace], finished: list[Job]) -> Pace:
        learned.append(len(finished))
        return real_learn(finished)

    monkeypatch.setattr(Pace, "learn", classmethod(counting_learn))
    eta = read_status(store, pending.id, None, live_within=60.0, reader=reader).eta_seconds
    again = read_status(store, pending.id, None, live_within=60.0, reader=reader).eta_seconds
    assert eta == again == 4.0  # nothing ahead, no worker counted as 1: its own 2 steps x 2 s
    assert learned == [1]  # learned once from the one completed job; the second read reused it
