"""Submits per second with concurrent submitters, with and without the queue's rank triggers.

Every submit that lands in the same block of the claim order (all of them, at the tail of a queue)
updates one counter row, and on PostgreSQL every change to the pending set holds the rank's
advisory lock to commit (jobs/rank.py): concurrent submits serialise on it. This measures what that
costs: ``JobStore.submit`` (INSERT + status event, one transaction) from T threads, first with the
triggers, then on a fresh database where they were dropped (what submit cost before migration 0009).
``max block`` is the largest block's count after the run: on PostgreSQL blocks move only at a commit
that finds no other writer in flight (or in the API's reaper loop), so overlapping submits can grow
one past its bound of 2 x 256 for a while.

    PYTHONPATH=src .venv/bin/python bench/submit_rate.py                 # 1, 4, 8 submitters
    PYTHONPATH=src .venv/bin/python bench/submit_rate.py --threads 4 --per-thread 500 --pg ''
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scale import DEFAULT_PG, bulk_pending, database
from framepack_api.jobs import rank
from framepack_api.jobs.db import create_engine, upgrade
from framepack_api.jobs.scheduling import scheduling_options
from framepack_api.jobs.store import JobStore, NewJob
from framepack_api.params import JobType
from framepack_api.settings import Settings


def rate(url: str, threads: int, per_thread: int, depth: int, triggers: bool) -> tuple[float, int]:
    """Submits per second over all threads, after ``depth`` pending jobs were queued, and the
    largest block's count afterwards (0 without the triggers)."""
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    engine = create_engine(url)
    upgrade(engine)
    if not triggers:
        with engine.begin() as conn:
            rank.uninstall(conn)
    bulk_pending(engine, depth, settings)
    store = JobStore(engine, **scheduling_options(settings))
    start = threading.Barrier(threads + 1)

    def submitter() -> None:
        start.wait()
        for i in range(per_thread):
            store.submit(NewJob(JobType.video, {"prompt": "bench"}, {}, priority=i % 3))

    workers = [threading.Thread(target=submitter) for _ in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    largest = 0
    if triggers:  # how far blocks outgrew their bound (2 x rank.SIZE) while submits overlapped
        with engine.connect() as conn:
            largest = int(conn.exec_driver_sql(
                "SELECT max(n) FROM (SELECT sum(pending) AS n FROM queue_buckets "
                "GROUP BY lo_key, lo_created, lo_id) AS blocks").scalar_one())
    engine.dispose()
    return threads * per_thread / elapsed, largest


def bulk_seconds(url: str, n: int, triggers: bool) -> float:
    """Seconds to queue n pending jobs in bulk (scale.bulk_pending: 5,000 rows a transaction, then ANALYZE)."""
    engine = create_engine(url)
    upgrade(engine)
    if not triggers:
        with engine.begin() as conn:
            rank.uninstall(conn)
    t0 = time.perf_counter()
    bulk_pending(engine, n, Settings(_env_file=None))  # type: ignore[call-arg]
    elapsed = time.perf_counter() - t0
    engine.dispose()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL server URL; '' to skip PostgreSQL")
    p.add_argument("--sqlite", action="store_true", help="SQLite too")
    p.add_argument("--threads", default="1,4,8", help="comma-separated submitter counts")
    p.add_argument("--per-thread", type=int, default=300)
    p.add_argument("--depth", type=int, default=1000, help="pending jobs queued before the submits")
    p.add_argument("--bulk", type=int, default=0, help="also time a bulk load of this many pending jobs")
    args = p.parse_args(argv)
    kinds = (["postgresql"] if args.pg else []) + (["sqlite"] if args.sqlite else [])
    print(f"{'db':<11}{'threads':>8}{'with rank/s':>13}{'without/s':>11}{'ratio':>7}{'max block':>11}")
    with tempfile.TemporaryDirectory(prefix="fp-submit-") as tmp_dir:
        for kind in kinds:
            for threads in (int(t) for t in args.threads.split(",") if t):
                figures = []
                for triggers in (True, False):
                    with database(kind, args.pg, Path(tmp_dir)) as url:
                        figures.append(rate(url, threads, args.per_thread, args.depth, triggers))
                (ranked, largest), (plain, _) = figures
                print(f"{kind:<11}{threads:>8}{ranked:>13.0f}{plain:>11.0f}{ranked / plain:>7.2f}{largest:>11}",
                      flush=True)
            if args.bulk:
                seconds = []
                for triggers in (True, False):
                    with database(kind, args.pg, Path(tmp_dir)) as url:
                        seconds.append(bulk_seconds(url, args.bulk, triggers))
                print(f"{kind:<11}bulk load of {args.bulk}: {seconds[0]:.2f} s with rank, {seconds[1]:.2f} s without, "
                      f"ratio {seconds[0] / seconds[1]:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
