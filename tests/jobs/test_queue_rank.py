"""Queue positions from block counts (jobs/rank.py) equal a plain count, whatever changed the queue.

Blocks of 4 (split above 8, merged below 2) so that a few hundred operations split and merge them
many times; the real size only changes how often.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from framepack_api.jobs import rank
from framepack_api.jobs.db import create_engine, upgrade
from framepack_api.jobs.schema import JobStatus
from framepack_api.jobs.status_read import StatusReader
from framepack_api.jobs.store import Job, JobStore, NewJob, count_ahead
from framepack_api.jobs.tables import jobs, queue_buckets
from framepack_api.params import JobType

SIZE = 4
TYPES = [JobType.video, JobType.image, JobType.image_batch, JobType.remote_video]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _small_blocks(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        rank.install(conn, SIZE)


def _pending_keys(conn: sa.Connection) -> list[tuple[float, float, str]]:
    rows = conn.execute(sa.select(jobs.c.claim_key, jobs.c.created_at, jobs.c.id)
                        .where(jobs.c.status == JobStatus.pending.value)).all()
    return sorted((float(k), float(c), str(i)) for k, c, i in rows)


def check_blocks(engine: sa.Engine, size: int = SIZE) -> None:
    """Every block's count (the sum of its shard rows) is the number of pending keys in its range,
    and its size is in bounds."""
    with engine.connect() as conn:
        keys = _pending_keys(conn)
        totals = sa.select(queue_buckets.c.lo_key, queue_buckets.c.lo_created, queue_buckets.c.lo_id,
                           sa.func.sum(queue_buckets.c.pending)).group_by(
            queue_buckets.c.lo_key, queue_buckets.c.lo_created, queue_buckets.c.lo_id)
        blocks = sorted((float(a), float(b), str(c), int(n)) for a, b, c, n in conn.execute(totals))
    assert blocks and blocks[0][:3] == (float("-inf"), float("-inf"), ""), blocks[:1]
    for i, (*lo, n) in enumerate(blocks):
        hi = tuple(blocks[i + 1][:3]) if i + 1 < len(blocks) else None
        inside = [k for k in keys if k >= tuple(lo) and (hi is None or k < hi)]
        assert n == len(inside), (i, lo, n, len(inside))
        assert n <= 2 * size, (i, n)
        assert i == 0 or n >= size // 2, (i, n)


def check_positions(engine: sa.Engine, store: JobStore, reader: StatusReader) -> None:
    with engine.connect() as conn:
        keys = _pending_keys(conn)
        for place, key in enumerate(keys):
            assert count_ahead(conn, *key) == place, (place, key)
    for place, key in list(enumerate(keys))[:: max(1, len(keys) // 7)]:
        assert reader.read(store, key[2], None, live_within=30.0).position == place + 1


def _bulk(engine: sa.Engine, clock: Clock, rnd: random.Random, n: int) -> None:
    """n pending rows in one INSERT: on PostgreSQL their row triggers run after all are in."""
    rows = []
    for _ in range(n):
        created = clock.now + rnd.choice([0.0, 0.5, 1.0])
        prio = rnd.randint(0, 3)
        rows.append({"id": str(uuid.uuid4()), "type": "video", "status": "pending", "params": {}, "inputs": {},
                     "priority": prio, "created_at": created, "updated_at": created,
                     "claim_key": rnd.choice([created - prio * 30.0, -float(prio)])})
    with engine.begin() as conn:
        conn.execute(jobs.insert(), rows)


def _pick(engine: sa.Engine, rnd: random.Random, status: JobStatus | None = None) -> str | None:
    with engine.connect() as conn:
        query = sa.select(jobs.c.id).order_by(jobs.c.id)
        ids = conn.execute(query if status is None else query.where(jobs.c.status == status.value)).scalars().all()
    return rnd.choice(ids) if ids else None


def test_positions_equal_a_count_after_random_operations(engine: sa.Engine) -> None:
    _small_blocks(engine)
    rnd = random.Random(20261203)
    clock = Clock()
    # Two scheduling settings in one queue, as after a settings change: aged keys and bare priorities.
    stores = [JobStore(engine, clock=clock, lease_seconds=10.0, max_attempts=2,
                      type_boost={JobType.image: 5}, aging_seconds=30.0),
              JobStore(engine, clock=clock, lease_seconds=10.0, max_attempts=2, aging_seconds=0.0)]
    store, reader = stores[0], StatusReader(engine)
    running: dict[str, Job] = {}
    for step in range(300):
        clock.now += rnd.choice([0.0, 0.0, 0.25, 1.0, 40.0])  # ties in created_at on purpose
        op = rnd.choices(["submit", "claim", "cancel", "release", "reap", "finish", "delete", "bulk",
                          "bulk_cancel", "bulk_delete"], [30, 16, 8, 6, 3, 8, 6, 3, 2, 2])[0]
        if op == "submit":
            rnd.choice(stores).submit(NewJob(rnd.choice(TYPES), {}, {}, priority=rnd.randint(-2, 5)))
        elif op == "claim":
            job = store.claim(f"w{step}")
            if job is not None:
                running[job.id] = job
        elif op == "cancel" and (job_id := _pick(engine, rnd, JobStatus.pending)):
            store.cancel(job_id)
        elif op == "release" and running:
            job = running.pop(rnd.choice(sorted(running)))
            store.release(job, "shutdown")
        elif op == "reap":  # every lease runs out: a multi-row requeue (or failure, attempts spent)
            clock.now += 11.0
            store.reap()
            running.clear()
        elif op == "finish" and running:
            job = running.pop(rnd.choice(sorted(running)))
            store.complete(job, {}, None) if rnd.random() < 0.5 else store.fail(job, "x")
        elif op == "delete" and (job_id := _pick(engine, rnd)):
            running.pop(job_id, None)
            store.delete(job_id)
        elif op == "bulk":
            _bulk(engine, clock, rnd, rnd.randint(5, 25))
        elif op == "bulk_cancel":
            with engine.begin() as conn:
                conn.execute(jobs.update().where(jobs.c.status == "pending", jobs.c.priority == rnd.randint(0, 3))
                             .values(status="cancelled"))
        elif op == "bulk_delete":
            with engine.begin() as conn:
                conn.execute(jobs.delete().where(jobs.c.status == "pending", jobs.c.priority == rnd.randint(0, 3)))
        check_blocks(engine)
        if step % 10 == 0:
            check_positions(engine, store, reader)
    check_positions(engine, store, reader)
    with engine.connect() as conn:
        assert len(_pending_keys(conn)) > 2 * SIZE  # the queue was deep enough to need blocks


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[sa.Engine]:
    eng = create_engine(pg_url)
    upgrade(eng)
    yield eng
    eng.dispose()


def test_concurrent_submits_and_claims_keep_counts_right_on_postgresql(pg_engine: sa.Engine) -> None:
    """Writers in parallel transactions, on shard rows of one block, under the shared lock."""
    _small_blocks(pg_engine)
    errors: list[BaseException] = []

    def submitter(seed: int) -> None:
        store = JobStore(pg_engine, aging_seconds=30.0)
        rnd = random.Random(seed)
        try:
            for _ in range(40):
                store.submit(NewJob(JobType.video, {}, {}, priority=rnd.randint(0, 3)))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def claimer() -> None:
        store = JobStore(pg_engine, aging_seconds=30.0)
        try:
            for _ in range(30):
                job = store.claim("w")
                if job is not None and job.attempt == 1:
                    store.release(job, "again") if job.priority % 2 else store.complete(job, {}, None)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=submitter, args=(i,)) for i in range(4)]
    threads += [threading.Thread(target=claimer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    # Blocks may have outgrown their bounds while writers overlapped (moved only when none is in
    # flight), never their counts: exact first, then in bounds once rebalanced.
    check_positions(pg_engine, JobStore(pg_engine), StatusReader(pg_engine))
    with pg_engine.begin() as conn:
        rank.rebalance(conn, SIZE)
    check_blocks(pg_engine)
    check_positions(pg_engine, JobStore(pg_engine), StatusReader(pg_engine))
