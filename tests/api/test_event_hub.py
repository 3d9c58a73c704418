"""The shared reader of the event log (api/event_hub.py) on the real databases: every stream gets
exactly its events in order, with its history when resuming, and a stream too slow to take them
reads its gap from the log itself without losing or repeating one."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from framepack_api.api import event_hub
from framepack_api.api.event_hub import EventHub
from framepack_api.jobs.events import read_events
from framepack_api.jobs.store import JobStore, NewJob
from framepack_api.params import JobType


def run_job(store: JobStore, owner: str, steps: int) -> str:
    job, _ = store.submit(NewJob(JobType.video, {"prompt": "p"}, {}, owner=owner))
    claimed = store.claim(f"worker-{owner}")
    assert claimed is not None and claimed.id == job.id
    for step in range(steps):
        store.heartbeat(claimed, progress=float(step), step=step)
    return job.id


async def drain(sub: event_hub.Subscription, hub: EventHub, until: int) -> list[int]:
    got: list[int] = []
    while not got or got[-1] < until:
        hub.wake()
        got += [e.id for e in await sub.next(timeout=5)]
    return got


def test_streams_get_their_own_events_their_history_and_survive_a_backlog_overflow(
        engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(event_hub, "MAX_BACKLOG", 5)
    store = JobStore(engine)
    early = run_job(store, "a", 3)  # history before any stream

    async def scenario() -> None:
        hub = EventHub(engine, poll_seconds=0.05, fallback_seconds=0.05)
        async with hub.subscribe(0, early, "a") as resumed, hub.subscribe(0, None, "b") as tenant_b, \
                hub.subscribe(0, None, None) as everything:
            assert resumed.history_until > 0  # reads its job's past itself
            a_job = await asyncio.to_thread(run_job, store, "a", 20)  # 22 events: overflows every backlog
            b_job = await asyncio.to_thread(run_job, store, "b", 2)
            last = max(e.id for e in read_events(engine))
            all_ids = [e.id for e in read_events(engine, limit=10_000)]
            b_ids = [e.id for e in read_events(engine, job_id=b_job)]
            early_ids = [e.id for e in read_events(engine, job_id=early)]
            hub.wake()
            for _ in range(3000):  # the reader has handed everything (bounded: 30 s)
                if hub.cursor >= last:
                    break
                await asyncio.sleep(0.01)
            assert everything.overflows == 1 and tenant_b.overflows == 0  # 22 events of a held, 5 fit
            assert await drain(everything, hub, last) == all_ids
            assert await drain(tenant_b, hub, b_ids[-1]) == b_ids
            assert await drain(resumed, hub, early_ids[-1]) == early_ids
            assert a_job not in {e.job_id for e in read_events(engine, owner="b")}
            assert hub.reads >= 1
        await hub.stop()

    asyncio.run(scenario())


def test_an_event_committed_after_a_newer_one_is_neither_skipped_nor_handed_out_of_order(engine: sa.Engine) -> None:
    """PostgreSQL gives event ids at insert and transactions commit in any order: the reader must
    wait at the missing id instead of moving its cursor past it."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: its ids commit in order")
    from framepack_api.jobs.tables import job_events

    def insert(conn: sa.Connection, kind: str) -> int:
        row = {"job_id": "j", "kind": kind, "data": {}, "created_at": 0.0}
        return int(conn.execute(sa.insert(job_events).values(row).returning(job_events.c.id)).scalar_one())

    async def scenario() -> None:
        hub = EventHub(engine, poll_seconds=0.05, fallback_seconds=0.05)
        with engine.begin() as conn:
            first = insert(conn, "status")  # the reader and the stream start after this one
        async with hub.subscribe(first, None, None) as everything:
            slow = engine.connect()
            slow_tx = slow.begin()
            try:
                late = insert(slow, "progress")  # its id is taken; it commits last
                with engine.begin() as conn:
                    newer = insert(conn, "completed")
                assert newer == late + 1
                hub.wake()
                assert await everything.next(timeout=0.5) == []  # nothing past the uncommitted id yet
            finally:
                slow_tx.commit()
                slow.close()
            assert await drain(everything, hub, newer) == [late, newer]
        await hub.stop()

    asyncio.run(scenario())
