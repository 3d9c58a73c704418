"""Retention on SQLite and PostgreSQL: finished jobs' files, then their rows (with events, webhook
outbox and /v1 rows), old progress events of running jobs; one round at a time across processes;
and the reaper's removal of killed attempts' work directories. Real stores, real files."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from framepack_api.jobs.retention import Policy, Retention, RoundReport, sweep_work_dirs
from framepack_api.jobs.store import Heartbeat, JobStore, NewJob
from framepack_api.jobs.tables import job_events, jobs, openai_videos, training_videos, webhook_deliveries
from framepack_api.params import JobType
from framepack_api.storage import LocalStorage

T0 = 1_000_000.0
HOUR = 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(engine: sa.Engine, clock: Clock) -> JobStore:
    return JobStore(engine, lease_seconds=60, max_attempts=2, clock=clock)


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "files")


def finished_job(store: JobStore, storage: LocalStorage, *, fail: bool = False, webhook: bool = False) -> str:
    """A job that ran for real through the store: input, preview, published result, events."""
    new = NewJob(JobType.video, {"prompt": "p"}, {}, webhook_url="http://127.0.0.1:9/hook" if webhook else None)
    job, _ = store.submit(new)
    storage.write_input(job.id, "image.png", b"input")
    claimed = store.claim("w1")
    assert claimed is not None and claimed.id == job.id
    store.heartbeat(claimed, progress=50.0, step=1, total_steps=2, section=1, total_sections=1)
    work = storage.work_dir(job.id, claimed.attempt)
    (work / "preview.jpg").write_bytes(b"jpg")
    store.set_preview(claimed, storage.save_preview(job.id, work / "preview.jpg", "preview.jpg"))
    if fail:
        assert store.fail(claimed, "boom")
    else:
        (work / "video.mp4").write_bytes(b"mp4")
        assert store.complete(claimed, {**storage.stage_result(job.id, claimed.attempt, {"video": work / "video.mp4"}),
                                        "info": {}}, 7)
    storage.discard_work(job.id, claimed.attempt)
    return job.id


def files_of(storage: LocalStorage, job_id: str) -> list[str]:
    return sorted(str(p.relative_to(storage.root)) for p in storage.root.rglob("*")
                  if p.is_file() and job_id in str(p))


def count(engine: sa.Engine, table: sa.Table, job_id: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)
                                .where(table.c.job_id == job_id)).scalar_one())


def row(engine: sa.Engine, job_id: str) -> sa.Row | None:
    with engine.connect() as conn:
        return conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()


def test_files_then_rows_of_finished_jobs_go_and_everything_else_stays(
        engine: sa.Engine, store: JobStore, storage: LocalStorage, clock: Clock) -> None:
    old = finished_job(store, storage, webhook=True)
    old_failed = finished_job(store, storage, fail=True)
    cached = finished_job(store, storage)  # owned by the training cache: its own lifetime
    with engine.begin() as conn:
        conn.execute(training_videos.insert().values(run_id="r1", job_id=cached, drill_text="d", created_at=T0))
        conn.execute(openai_videos.insert().values(job_id=old, model="framepack", seconds="4", size="64x64",
                                                   created_at=T0))
    clock.now = T0 + 10 * HOUR
    recent = finished_job(store, storage)
    clock.now = T0
    pending, _ = store.submit(NewJob(JobType.video, {"prompt": "waiting"}, {}))  # old, never run
    storage.write_input(pending.id, "image.png", b"input")
    assert files_of(storage, old) == [f"inputs/{old}/image.png", f"outputs/{old}/1/video.mp4",
                                      f"previews/{old}/preview.jpg"]
    assert count(engine, webhook_deliveries, old) >= 1 and count(engine, job_events, old) >= 4

    retention = Retention(engine, storage, Policy(files_seconds=5 * HOUR, jobs_seconds=50 * HOUR),
                          holder="a", clock=clock)
    clock.now = T0 + 11 * HOUR
    report = retention.run_round()
    assert report.ran and sorted(report.files_removed) == sorted([old, old_failed])
    assert report.jobs_deleted == []
    assert files_of(storage, old) == [] and files_of(storage, old_failed) == []
    for kept in (cached, recent, pending.id):
        assert files_of(storage, kept), kept
    old_row = row(engine, old)
    assert old_row is not None and old_row.files_expired_at == clock.now and old_row.result["video"]
    assert old_row.preview is None and old_row.status == "completed"
    assert row(engine, recent).files_expired_at is None  # type: ignore[union-attr]

    clock.now = T0 + 51 * HOUR
    report = retention.run_round()
    assert sorted(report.jobs_deleted) == sorted([old, old_failed])
    for gone in (old, old_failed):
        assert row(engine, gone) is None
        for table in (job_events, webhook_deliveries, openai_videos):
            assert count(engine, table, gone) == 0, table.name
    for kept in (cached, pending.id):
        assert row(engine, kept) is not None and files_of(storage, kept)
    assert report.files_removed == [recent] and files_of(storage, recent) == []  # 41 h old: files only
    assert row(engine, recent).files_expired_at == clock.now  # type: ignore[union-attr]


def test_old_progress_events_go_even_while_the_job_runs(
        engine: sa.Engine, store: JobStore, storage: LocalStorage, clock: Clock) -> None:
    job, _ = store.submit(NewJob(JobType.video, {"prompt": "long"}, {}, webhook_url="http://127.0.0.1:9/h",
                                 webhook_events=["progress", "status"]))
    running = store.claim("w1")
    assert running is not None
    for step in range(1, 21):  # a running job logs several events a second
        clock.now += 0.2
        store.heartbeat(running, progress=step, step=step, total_steps=100, section=1, total_sections=1)
    with engine.begin() as conn:
        conn.execute(webhook_deliveries.update().where(webhook_deliveries.c.job_id == job.id)
                     .values(status="delivered", delivered_at=clock.now))
    clock.now = T0 + 2 * HOUR
    store.heartbeat(running, progress=21, step=21, total_steps=100, section=1, total_sections=1)

    def kinds() -> list[str]:
        with engine.connect() as conn:
            return list(conn.execute(sa.select(job_events.c.kind).where(job_events.c.job_id == job.id)
                                     .order_by(job_events.c.id)).scalars())

    assert kinds().count("progress") == 21
    report = Retention(engine, storage, Policy(events_seconds=HOUR), holder="a", clock=clock).run_round()
    assert report.events_deleted == 20 and report.deliveries_deleted >= 20
    # The transitions stay; of the progress only the newest, younger than the limit.
    assert kinds() == ["status", "status", "progress"]
    with engine.connect() as conn:
        left = conn.execute(sa.select(webhook_deliveries.c.status)
                            .where(webhook_deliveries.c.job_id == job.id)).scalars().all()
    assert left == ["pending"]  # the newest delivery, still owed, is kept
    assert store.get(job.id).status.value == "processing"


def test_one_round_at_a_time_across_processes(
        engine: sa.Engine, store: JobStore, storage: LocalStorage, clock: Clock) -> None:
    ids = {finished_job(store, storage) for _ in range(12)}
    clock.now = T0 + 10 * HOUR
    policy = Policy(files_seconds=HOUR, interval_seconds=600)
    first, second = (Retention(engine, storage, policy, holder=h, clock=clock) for h in ("api-1", "api-2"))
    barrier = threading.Barrier(2)
    reports: dict[str, RoundReport] = {}

    def run(name: str, retention: Retention) -> None:
        barrier.wait()
        reports[name] = retention.run_round()

    threads = [threading.Thread(target=run, args=(n, r)) for n, r in (("1", first), ("2", second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(r.ran for r in reports.values()) == [False, True]
    removed = [i for r in reports.values() for i in r.files_removed]
    assert sorted(removed) == sorted(ids)  # each job once, by the one round that ran
    # The lease holds for the interval, whoever asks; then the other process may take it.
    loser = first if not reports["1"].ran else second
    winner = second if loser is first else first
    assert not loser.acquire()
    clock.now += 601
    assert loser.acquire() and not winner.acquire()


def test_the_reaper_removes_work_dirs_of_killed_attempts_only(
        engine: sa.Engine, store: JobStore, storage: LocalStorage, clock: Clock) -> None:
    killed, _ = store.submit(NewJob(JobType.video, {"prompt": "killed"}, {}))
    alive, _ = store.submit(NewJob(JobType.video, {"prompt": "alive"}, {}))
    first = store.claim("w-killed")
    second = store.claim("w-alive")
    assert first is not None and second is not None and {first.id, second.id} == {killed.id, alive.id}
    dirs = {job.id: storage.work_dir(job.id, job.attempt) for job in (first, second)}
    for d in dirs.values():
        (d / "section-1.mp4").write_bytes(b"half a video")
    unknown = storage.root / "work" / "0d6f5c1e-0000-4000-8000-000000000000-2"
    unknown.mkdir()
    unrelated = storage.root / "work" / "notes"
    unrelated.mkdir()
    an_hour_ago = time.time() - HOUR
    for d in (*dirs.values(), unknown):
        os.utime(d, (an_hour_ago, an_hour_ago))

    clock.now += 61  # first's worker was killed: its lease ran out; second's worker renews
    assert store.heartbeat(second) is Heartbeat.ok
    assert store.reap() == [first.id]
    assert store.get(first.id).status.value == "pending"
    removed = sweep_work_dirs(engine, storage, min_age_seconds=60)
    assert sorted(removed) == sorted([dirs[first.id].name, unknown.name])
    assert not dirs[first.id].exists() and not unknown.exists()
    assert (dirs[second.id] / "section-1.mp4").read_bytes() == b"half a video"  # its attempt runs on
    assert unrelated.is_dir()

    # The requeued job is claimed again: its new attempt's fresh directory is never taken, even when
    # the sweep runs before the claim is visible to it.
    again = store.claim("w-new")
    assert again is not None and again.id == first.id and again.attempt == 2
    fresh = storage.work_dir(again.id, again.attempt)
    assert store.release(again, "shutdown")  # attempt back to 1, the dir not yet discarded
    assert sweep_work_dirs(engine, storage, min_age_seconds=60) == [] and fresh.is_dir()
