"""The queue at depth: claim latency and ``GET /status`` of a pending job, figures only.

For each database (SQLite file, PostgreSQL schema) and each depth (0, 1k, 10k, 100k pending jobs,
inserted in bulk with the claim key submit would store, not through HTTP) it measures:

  status   ``GET /status/{id}`` of a job submitted through the API after the bulk rows (so the
           last in line: its queue position counts every row ahead), in-process via TestClient;
  position ``JobStore.position`` of that job alone (a read transaction, its key, the jobs ahead);
  rank     the jobs-ahead SELECT alone (block counts + one block, jobs/rank.py), as /status runs it;
  count    the plain count along ix_jobs_claim_key that it replaced, in the same database: linear;
  claim    ``JobStore.claim`` of the head of the queue (one conditional UPDATE), repeated; the
           repeats' own jobs are added first, so the queue is depth + repeats deep;
  progress ``JobStore.heartbeat`` with progress fields: the fenced UPDATE and the event INSERT a
           running job writes at each step (at most every 0.25 s), one transaction.

Each figure is the median and p95 of its repeats, in milliseconds, and the ratio to depth 0.

    .venv/bin/python bench/scale.py            # 0, 1k, 10k, 100k on SQLite and PostgreSQL
    .venv/bin/python bench/scale.py --quick    # 0, 1k, 10k; fewer repeats
    .venv/bin/python bench/scale.py --pg ''    # SQLite only
    .venv/bin/python bench/scale.py --workers 1,2,4 --depths ''   # only jobs/s with 1, 2, 4 workers

After the depth table, a full run (not --quick) also prints jobs/s with 1, 2 and 4 workers on
PostgreSQL with the tiny model at its smallest size, and the queue overhead per job
(bench/worker_rate.py, which runs alone too).

PostgreSQL: ``--pg URL`` (default FRAMEPACK_API_BENCH_PG or the test server on 127.0.0.1:5432);
each depth gets a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa
from fastapi.testclient import TestClient
from PIL import Image

from framepack_api.api.app import create_app
from framepack_api.jobs import rank
from framepack_api.jobs.db import create_engine, upgrade
from framepack_api.jobs.scheduling import claim_key, scheduling_options
from framepack_api.jobs.store import JobStore
from framepack_api.jobs.tables import jobs
from framepack_api.params import JobType
from framepack_api.settings import Settings

DEFAULT_PG = os.environ.get("FRAMEPACK_API_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BATCH = 5000


def bulk_pending(engine: sa.Engine, n: int, settings: Settings) -> None:
    """n pending jobs (videos and images, priorities 0-2) in one transaction per batch."""
    options = scheduling_options(settings)
    start = time.time() - n  # older than anything submitted after, one second apart
    for first in range(0, n, BATCH):
        rows = []
        for i in range(first, min(n, first + BATCH)):
            job_type = JobType.image if i % 5 == 0 else JobType.video
            created = start + i
            rows.append({"id": str(uuid.uuid4()), "type": job_type.value, "status": "pending",
                         "params": {"prompt": "bench"}, "inputs": {}, "priority": i % 3, "created_at": created,
                         "updated_at": created, "claim_key": float(claim_key(i % 3, job_type, created, **options))})
        with engine.begin() as conn:
            conn.execute(jobs.insert(), rows)
    # What autovacuum/ANALYZE would have done by the time a queue is this deep.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE jobs" if engine.dialect.name == "postgresql" else "ANALYZE")


@contextmanager
def database(kind: str, pg: str, tmp: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp / f'jobs-{uuid.uuid4().hex[:8]}.db'}"
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield f"{pg}{'&' if '?' in pg else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median, p95) in milliseconds, after one warm-up call."""
    fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.95))]


def measure(url: str, depth: int, repeats: int, tmp: Path) -> dict[str, tuple[float, float]]:
    settings = Settings(model="tiny", data_dir=tmp / uuid.uuid4().hex[:8], workers=0, database_url=url,
                        _env_file=None)  # type: ignore[call-arg]
    engine = create_engine(url)
    upgrade(engine)
    bulk_pending(engine, depth, settings)
    out: dict[str, tuple[float, float]] = {}
    with TestClient(create_app(settings)) as client:
        files = {"image": ("in.png", _png(), "image/png")}
        job_id = client.post("/generate", data={"prompt": "last in line"}, files=files).json()["job_id"]

        def status() -> None:
            body = client.get(f"/status/{job_id}").json()
            assert body["queue_position"] == depth + 1, body

        out["status"] = timed(status, repeats)
    store = JobStore(engine, **scheduling_options(settings))
    job = store.get(job_id)
    out["position"] = timed(lambda: store.position(job), repeats)
    out["rank"], out["count"] = _statements_alone(engine, store, job_id, depth, repeats)
    # As many jobs again as claims, so that even at depth 0 every timed claim takes a job.
    bulk_pending(engine, repeats + 1, settings)
    out["claim"] = timed(lambda: store.claim("bench"), repeats)
    # What a running job writes at every step: the fenced progress UPDATE and its event, one transaction.
    running = store.claim("bench")
    assert running is not None
    out["progress"] = timed(lambda: store.heartbeat(running, progress=50.0, step=1, message="bench"), repeats)
    engine.dispose()
    return out


def _statements_alone(engine: sa.Engine, store: JobStore, job_id: str, depth: int,
                      repeats: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """The jobs-ahead SELECT alone on one DBAPI cursor: the block counts of jobs/rank.py, and the
    plain count along ix_jobs_claim_key that it replaced (same database, same moment: the ratio
    between the two holds on a loaded machine where each figure alone moves)."""
    with engine.connect() as conn:
        key = tuple(conn.execute(sa.select(jobs.c.claim_key, jobs.c.created_at, jobs.c.id)
                                 .where(jobs.c.id == job_id)).one())
    plain = sa.select(sa.func.count()).select_from(jobs).where(
        jobs.c.status == "pending", sa.tuple_(jobs.c.claim_key, jobs.c.created_at, jobs.c.id) < sa.tuple_(*key))
    figures = []
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for statement in (sa.select(rank.ahead(key)), plain):
            compiled = statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})

            def run(sql: str = str(compiled)) -> None:
                cursor.execute(sql)
                assert cursor.fetchone()[0] == depth
                raw.rollback()  # no snapshot kept between repeats (PostgreSQL)

            figures.append(timed(run, repeats))
    finally:
        raw.close()
    return figures[0], figures[1]


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (90, 120, 200)).save(buf, format="PNG")
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="depths 0, 1k, 10k and fewer repeats")
    p.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL server URL; '' to skip PostgreSQL")
    p.add_argument("--depths", default=None, help="comma-separated depths; '' for none")
    p.add_argument("--workers", default=None, help="worker counts for jobs/s on PostgreSQL; '' for none "
                                                   "(default 1,2,4, or none with --quick)")
    args = p.parse_args(argv)
    depths: tuple[int, ...] = (0, 1000, 10_000) if args.quick else (0, 1000, 10_000, 100_000)
    if args.depths is not None:
        depths = tuple(int(d) for d in args.depths.split(",") if d)
    repeats = 30 if args.quick else 100
    kinds = ["sqlite", "postgresql"] if args.pg else ["sqlite"]
    names = ("status", "position", "rank", "count", "claim", "progress")
    print(f"{'db':<11}{'pending':>9}" + "".join(f"  {n + ' p50':>13} {'p95':>7} {'x0':>5}" for n in names))
    with tempfile.TemporaryDirectory(prefix="fp-scale-") as tmp_dir:
        tmp = Path(tmp_dir)
        for kind in kinds if depths else []:
            base: dict[str, float] = {}
            for depth in depths:
                with database(kind, args.pg, tmp) as url:
                    figures = measure(url, depth, repeats, tmp)
                line = f"{kind:<11}{depth:>9}"
                for name in names:
                    p50, p95 = figures[name]
                    base.setdefault(name, p50)
                    line += f"  {p50:>13.2f} {p95:>7.2f} {p50 / base[name]:>5.2f}"
                print(line, flush=True)
    counts = args.workers if args.workers is not None else ("" if args.quick else "1,2,4")
    if counts and args.pg:
        from bench.worker_rate import report

        report(args.pg, [int(n) for n in counts.split(",")], per_worker=4 if args.quick else 8)
    return 0


if __name__ == "__main__":
    sys.exit(main())
