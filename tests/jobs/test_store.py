"""The job store on SQLite and PostgreSQL: the same code, the same rules."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from framepack_api.errors import Conflict, JobNotFound
from framepack_api.jobs.schema import TRANSITIONS, JobStatus
from framepack_api.jobs.store import Heartbeat, JobStore, NewJob
from framepack_api.jobs.tables import jobs
from framepack_api.params import JobType


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(engine: sa.Engine, clock: FakeClock) -> JobStore:
    return JobStore(engine, lease_seconds=30, max_attempts=2, clock=clock)


def submit(store: JobStore, clock: FakeClock, priority: int = 0, key: str | None = None,
           request_hash: str | None = None) -> str:
    clock.now += 1
    job, _ = store.submit(NewJob(JobType.video, {"prompt": "p"}, {"image": "x.png"}, priority=priority,
                                 idempotency_key=key, request_hash=request_hash))
    return job.id


def test_submit_then_get_round_trips_every_field(store: JobStore, clock: FakeClock) -> None:
    job_id = submit(store, clock, priority=3)
    job = store.get(job_id)
    assert (job.status, job.type, job.priority, job.attempt) == (JobStatus.pending, JobType.video, 3, 0)
    assert job.params == {"prompt": "p"} and job.inputs == {"image": "x.png"}
    assert job.created_at == clock.now and job.max_attempts == 2


def test_unknown_id_raises(store: JobStore) -> None:
    with pytest.raises(JobNotFound):
        store.get("00000000-0000-0000-0000-000000000000")


def test_claim_order_is_priority_then_age_and_positions_follow_it(store: JobStore, clock: FakeClock) -> None:
    a = submit(store, clock)
    b = submit(store, clock, priority=5)
    c = submit(store, clock)
    assert [store.position(store.get(i)) for i in (b, a, c)] == [1, 2, 3]
    assert [j.id for j in store.list_pending()] == [b, a, c]
    claimed = [store.claim("w1"), store.claim("w1"), store.claim("w1"), store.claim("w1")]
    assert [j.id if j else None for j in claimed] == [b, a, c, None]
    assert store.position(store.get(a)) is None


def test_claim_sets_lease_attempt_and_worker(store: JobStore, clock: FakeClock) -> None:
    job_id = submit(store, clock)
    job = store.claim("w1")
    assert job and job.id == job_id
    assert (job.status, job.worker_id, job.attempt) == (JobStatus.processing, "w1", 1)
    assert job.lease_expires_at == clock.now + 30


def test_concurrent_claims_never_hand_one_job_to_two_workers(store: JobStore, clock: FakeClock) -> None:
    ids = {submit(store, clock) for _ in range(20)}
    got: list[str] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        while (job := store.claim(name)) is not None:
            with lock:
                got.append(job.id)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == sorted(ids)


def test_heartbeat_renews_lease_and_is_fenced(store: JobStore, clock: FakeClock) -> None:
    submit(store, clock)
    job = store.claim("w1")
    assert job
    clock.now += 20
    assert store.heartbeat(job, progress=50.0, step=3) is Heartbeat.ok
    row = store.get(job.id)
    assert (row.progress, row.step, row.lease_expires_at) == (50.0, 3, clock.now + 30)
    impostor = job.__class__(**{**job.__dict__, "worker_id": "w2"})
    assert store.heartbeat(impostor, progress=99.0) is Heartbeat.lost
    assert store.get(job.id).progress == 50.0


def test_expired_lease_is_requeued_then_failed_when_attempts_are_spent(
    store: JobStore, clock: FakeClock
) -> None:
    job_id = submit(store, clock)
    first = store.claim("w1")
    assert first
    clock.now += 31
    assert store.reap() == [job_id]
    assert store.get(job_id).status is JobStatus.pending
    # The old worker wakes up: its writes are refused.
    assert store.heartbeat(first) is Heartbeat.lost
    assert store.complete(first, {"video": "v.mp4"}, seed=1) is False
    second = store.claim("w2")
    assert second and second.attempt == 2
    clock.now += 31
    store.reap()
    failed = store.get(job_id)
    assert failed.status is JobStatus.failed and "no attempts left" in (failed.error or "")


def test_complete_records_result_seed_and_time(store: JobStore, clock: FakeClock) -> None:
    submit(store, clock)
    job = store.claim("w1")
    assert job
    assert store.complete(job, {"video": "outputs/x/video.mp4"}, seed=42)
    done = store.get(job.id)
    assert (done.status, done.seed, done.progress) == (JobStatus.completed, 42, 100.0)
    assert done.result == {"video": "outputs/x/video.mp4"} and done.finished_at == clock.now
    assert store.fail(job, "late") is False  # finished jobs never change again


def test_cancel_pending_is_immediate_and_idempotent(store: JobStore, clock: FakeClock) -> None:
    job_id = submit(store, clock)
    assert store.cancel(job_id).status is JobStatus.cancelled
    assert store.cancel(job_id).status is JobStatus.cancelled
    assert store.claim("w1") is None


def test_cancel_running_is_seen_by_the_next_heartbeat(store: JobStore, clock: FakeClock) -> None:
    submit(store, clock)
    job = store.claim("w1")
    assert job
    assert store.cancel(job.id).status is JobStatus.processing
    assert store.heartbeat(job, step=1) is Heartbeat.cancel_requested
    assert store.mark_cancelled(job)
    assert store.get(job.id).status is JobStatus.cancelled


def test_release_returns_the_job_without_spending_an_attempt(store: JobStore, clock: FakeClock) -> None:
    job_id = submit(store, clock)
    job = store.claim("w1")
    assert job
    assert store.release(job, "worker shutting down")
    again = store.get(job_id)
    assert (again.status, again.attempt, again.worker_id) == (JobStatus.pending, 0, None)


def test_idempotency_key_returns_the_same_job(store: JobStore, clock: FakeClock) -> None:
    first = submit(store, clock, key="k1", request_hash="h1")
    assert submit(store, clock, key="k1", request_hash="h1") == first
    with pytest.raises(Conflict):
        submit(store, clock, key="k1", request_hash="other")
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar_one() == 1


def test_transition_table_has_no_way_out_of_a_terminal_status() -> None:
    for status in (JobStatus.completed, JobStatus.failed, JobStatus.cancelled):
        assert TRANSITIONS[status] == frozenset() and status.is_terminal
    assert JobStatus.pending in TRANSITIONS[JobStatus.processing]


def test_live_workers(store: JobStore, clock: FakeClock) -> None:
    store.worker_seen("w1", state="idle", pid=1, hostname="h", preset="tiny")
    clock.now += 100
    store.worker_seen("w2", state="busy", pid=2, hostname="h", preset="tiny", current_job_id="j")
    assert [w["id"] for w in store.live_workers(within_seconds=30)] == ["w2"]


def test_racing_submits_with_one_idempotency_key_make_one_job(store: JobStore) -> None:
    barrier = threading.Barrier(8)
    ids: list[str] = []
    created: list[bool] = []
    lock = threading.Lock()

    def submit_same() -> None:
        barrier.wait()
        job, was_created = store.submit(NewJob(JobType.video, {"prompt": "p"}, {}, idempotency_key="race",
                                               request_hash="h"))
        with lock:
            ids.append(job.id)
            created.append(was_created)

    threads = [threading.Thread(target=submit_same) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1 and created.count(True) == 1
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar_one() == 1
