"""JobStore.worker_killed on SQLite and PostgreSQL: the transition `serve` makes when one of its
workers dies by a signal (issue 11 item 8)."""

from __future__ import annotations

import sqlalchemy as sa

from framepack_api.jobs.schema import JobStatus
from framepack_api.jobs.store import JobStore, NewJob
from framepack_api.jobs.tables import jobs
from framepack_api.params import JobType

OOM = "worker killed by signal 9, likely out of memory"


def _deaths(engine: sa.Engine, job_id: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(jobs.c.signal_deaths).where(jobs.c.id == job_id)).scalar_one())


def _submit(store: JobStore) -> str:
    job, _ = store.submit(NewJob(JobType.video, {"prompt": "p"}, {"image": "x.png"}))
    return job.id


def test_first_death_requeues_with_the_reason_second_fails(engine: sa.Engine) -> None:
    store = JobStore(engine, lease_seconds=30, max_attempts=5)
    job_id = _submit(store)
    other = _submit(store)
    assert store.claim("w1") is not None and store.get(job_id).worker_id == "w1"
    assert store.claim("w2") is not None  # another worker's job must stay untouched

    assert store.worker_killed("w1", OOM) == [job_id]
    job = store.get(job_id)
    assert (job.status, job.worker_id, job.error, job.message) == (JobStatus.pending, None, OOM, f"requeued: {OOM}")
    assert _deaths(engine, job_id) == 1
    assert store.get(other).status is JobStatus.processing

    assert store.claim("w3") is not None and store.get(job_id).attempt == 2
    assert store.worker_killed("w3", OOM) == [job_id]
    job = store.get(job_id)
    assert job.status is JobStatus.failed and job.finished_at is not None
    assert job.error == f"{OOM}; not retried: its worker died this way 2 times"
    assert _deaths(engine, job_id) == 2
    assert store.worker_killed("w3", OOM) == []  # nothing held any more: harmless


def test_spent_attempts_and_requested_cancels_end_the_job(engine: sa.Engine) -> None:
    store = JobStore(engine, lease_seconds=30, max_attempts=1)
    spent = _submit(store)
    assert store.claim("w1") is not None
    assert store.worker_killed("w1", "worker killed by signal 11 (SIGSEGV)") == [spent]
    job = store.get(spent)
    assert job.status is JobStatus.failed and job.error == "worker killed by signal 11 (SIGSEGV); no attempts left"

    store = JobStore(engine, lease_seconds=30, max_attempts=3)
    cancelled = _submit(store)
    assert store.claim("w2") is not None
    store.cancel(cancelled)
    assert store.worker_killed("w2", OOM) == [cancelled]
    assert store.get(cancelled).status is JobStatus.cancelled


def test_the_reason_names_the_signal() -> None:
    from framepack_api.worker.supervisor import death_reason

    assert death_reason(9) == OOM
    assert death_reason(11) == "worker killed by signal 11 (SIGSEGV)"
    assert death_reason(6) == "worker killed by signal 6 (SIGABRT)"
