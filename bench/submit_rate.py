"""Submits per second with concurrent submitters, with and without the queue's rank triggers.

Every submit that lands in the same block of the claim order (all of them, at the tail of a queue)
updates one counter row, and on PostgreSQL every change to the pending set holds the rank's
advisory lock to commit (jobs/rank.py): concurrent submits serialise on it. This measures what that
costs: ``JobStore.submit`` (INSERT + status event, one transaction) from T threads, first with the
triggers, then on a fresh database where they were dropped (what submit cost before migration 0009).

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


def rate(url: str, threads: int, per_thread: int, depth: int, triggers: bool) -> float:
    """Submits per second over all threads, after ``depth`` pending jobs were queued."""
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
    engine.dispose()
    return threads * per_thread / elapsed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL server URL; '' to skip PostgreSQL")
    p.add_argument("--sqlite", action="store_true", help="SQLite too")
    p.add_argument("--threads", default="1,4,8", help="comma-separated submitter counts")
    p.add_argument("--per-thread", type=int, default=300)
    p.add_argument("--depth", type=int, default=1000, help="pending jobs queued before the submits")
    args = p.parse_args(argv)
    kinds = (["postgresql"] if args.pg else []) + (["sqlite"] if args.sqlite else [])
    print(f"{'db':<11}{'threads':>8}{'with rank/s':>13}{'without/s':>11}{'ratio':>7}")
    with tempfile.TemporaryDirectory(prefix="fp-submit-") as tmp_dir:
        for kind in kinds:
            for threads in (int(t) for t in args.threads.split(",") if t):
                figures = []
                for triggers in (True, False):
                    with database(kind, args.pg, Path(tmp_dir)) as url:
                        figures.append(rate(url, threads, args.per_thread, args.depth, triggers))
                print(f"{kind:<11}{threads:>8}{figures[0]:>13.0f}{figures[1]:>11.0f}{figures[0] / figures[1]:>7.2f}",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
