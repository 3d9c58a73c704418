"""Jobs per second with 1, 2, 4 workers on one PostgreSQL, and the queue's overhead per job.

For each worker count N: a fresh PostgreSQL schema, ``framepack-api serve --workers N`` (tiny model),
one warm-up job per worker, then ``N × --jobs-per-worker`` jobs of the smallest size (64 px, 1 step,
window 1, 1 section) submitted back to back. From the job rows themselves (no polling lag):

  jobs/s     jobs / (last finished_at - first started_at);
  run ms     mean started_at → finished_at: the worker's own work (model, MP4, thumbnail, results);
  overhead   N × span / jobs - run: what each job costs a worker outside its run (claim, events,
             completion, the gap until the next claim), in ms per job.

    .venv/bin/python bench/worker_rate.py                      # 1, 2, 4 workers, 8 jobs each
    .venv/bin/python bench/worker_rate.py --workers 1,2 --jobs-per-worker 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa

from bench._server import ServerProcess
from bench.scale import DEFAULT_PG, database
from bench.status_rate import submit, wait_status
from framepack_api.jobs.tables import jobs


def measure(pg: str, workers: int, per_worker: int, tmp: Path) -> dict[str, float]:
    with database("postgresql", pg, tmp) as url:
        data = tmp / f"w{workers}"
        with ServerProcess(data, workers=workers, env={"FRAMEPACK_API_DATABASE_URL": url}) as server:
            server.wait_ready(timeout=600)
            warm = [submit(server.base_url) for _ in range(workers)]
            for job_id in warm:
                wait_status(server.base_url, job_id, "completed", timeout=600)
            ids = [submit(server.base_url) for _ in range(workers * per_worker)]
            for job_id in ids:
                wait_status(server.base_url, job_id, "completed", timeout=900)
            server.refresh_workers()
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            rows = conn.execute(sa.select(jobs.c.started_at, jobs.c.finished_at).where(jobs.c.id.in_(ids))).all()
        engine.dispose()
    span = max(r.finished_at for r in rows) - min(r.started_at for r in rows)
    run = statistics.fmean(r.finished_at - r.started_at for r in rows)
    return {"jobs": len(rows), "jobs_per_s": len(rows) / span, "run_ms": run * 1000,
            "overhead_ms": (workers * span / len(rows) - run) * 1000}


def report(pg: str, counts: list[int], per_worker: int) -> None:
    print(f"jobs/s on PostgreSQL, tiny model, smallest size; load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    print(f"{'workers':>8}{'jobs':>6}{'jobs/s':>9}{'x 1':>6}{'run ms':>9}{'overhead ms/job':>17}", flush=True)
    base = None
    with tempfile.TemporaryDirectory(prefix="fp-workers-") as tmp_dir:
        for n in counts:
            t0 = time.monotonic()
            f = measure(pg, n, per_worker, Path(tmp_dir))
            base = base or f["jobs_per_s"]
            print(f"{n:>8}{f['jobs']:>6.0f}{f['jobs_per_s']:>9.2f}{f['jobs_per_s'] / base:>6.2f}{f['run_ms']:>9.0f}"
                  f"{f['overhead_ms']:>17.0f}   ({time.monotonic() - t0:.0f} s)", flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--pg", default=DEFAULT_PG)
    p.add_argument("--workers", default="1,2,4")
    p.add_argument("--jobs-per-worker", type=int, default=8)
    args = p.parse_args(argv)
    report(args.pg, [int(x) for x in args.workers.split(",")], args.jobs_per_worker)
    return 0


if __name__ == "__main__":
    sys.exit(main())
