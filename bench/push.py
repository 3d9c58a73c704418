"""Push instead of polling: what idle event streams and an idle server cost the API process.

For each database (SQLite file, PostgreSQL schema) and each mode (push on, the default; push off:
the shared reader polls the event log every 0.2 s) it starts ``framepack-api serve --workers 0`` and
measures, from ``/proc/<pid>/stat`` (user + system time of the API process over a window):

  idle       the API process with no request at all;
  streams    the same with N idle SSE subscribers (``/events/{job_id}`` of a pending job that no
             worker takes), all connected and caught up before the window starts;
  delay      from sending ``POST /cancel/{job_id}`` until the last of the N streams has read the
             ``cancelled`` event (min / median / max over the streams).

CPU shares are in percent of one core; the subscribers run in this process, not the API's.

    PYTHONPATH=src .venv/bin/python bench/push.py                  # 200 streams, 10 s windows, both databases
    PYTHONPATH=src .venv/bin/python bench/push.py --streams 50 --window 5 --pg ''   # SQLite only, quicker
    # the same run also against the code before push (a `base` row per database):
    mkdir -p /tmp/base && git archive 05a9d41 src | tar -x -C /tmp/base
    PYTHONPATH=src .venv/bin/python bench/push.py --baseline-src /tmp/base/src
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import sqlalchemy as sa

from bench._server import ServerProcess

DEFAULT_PG = os.environ.get("FRAMEPACK_API_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14 and 15 of stat)


async def cpu_share(pid: int, window: float) -> float:
    """Percent of one core the process used over ``window`` seconds."""
    start_cpu, start = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(window)
    return 100.0 * (cpu_seconds(pid) - start_cpu) / (time.monotonic() - start)


@contextmanager
def database(kind: str, pg: str) -> Iterator[str]:
    if kind == "sqlite":
        yield ""  # the server's default: an SQLite file in its data directory
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in pg else "?"
    try:
        yield f"{pg}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


def tiny_png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 30, 200)).save(out, format="PNG")
    return out.getvalue()


async def follow(http: httpx.AsyncClient, job_id: str, caught_up: asyncio.Event, counter: list[int],
                 streams: int, arrivals: list[float]) -> None:
    counted = False
    async with http.stream("GET", f"/events/{job_id}") as response:
        async for line in response.aiter_lines():
            if line == "event: status" and not counted:  # its job's history: the submit
                counted = True
                counter[0] += 1
                if counter[0] == streams:
                    caught_up.set()
            elif line == "event: cancelled":
                arrivals.append(time.monotonic())
                return


async def measure(url: str, push: bool, streams: int, window: float, tmp: Path,
                  source: str | None = None) -> dict[str, Any]:
    env = {"FRAMEPACK_API_PUSH": "true" if push else "false", "FRAMEPACK_API_MIN_FREE_DISK_MB": "0",
           "FRAMEPACK_API_ACCESS_LOG": "false", "FRAMEPACK_API_UI_ENABLED": "false"}
    if source:
        env["PYTHONPATH"] = source  # another version of the server, e.g. the one before push
    if url:
        env["FRAMEPACK_API_DATABASE_URL"] = url
    server = ServerProcess(tmp / f"data-{uuid.uuid4().hex[:6]}", workers=0, env=env)
    server.start()
    try:
        server.wait_ready()
        assert server.proc is not None
        pid = server.proc.pid
        limits = httpx.Limits(max_connections=streams + 10, max_keepalive_connections=streams + 10)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=httpx.Timeout(30, read=600),
                                     limits=limits, trust_env=False) as http:
            r = await http.post("/generate", data={"prompt": "bench", "resolution": "64"},
                                files={"image": ("in.png", tiny_png(), "image/png")})
            r.raise_for_status()
            job_id = r.json()["job_id"]
            await asyncio.sleep(2.0)  # let start-up work (migrations, first rounds) settle
            idle = await cpu_share(pid, window)
            caught_up, counter = asyncio.Event(), [0]
            arrivals: list[float] = []
            tasks = [asyncio.create_task(follow(http, job_id, caught_up, counter, streams, arrivals))
                     for _ in range(streams)]
            await asyncio.wait_for(caught_up.wait(), 300)
            await asyncio.sleep(1.0)
            with_streams = await cpu_share(pid, window)
            sent = time.monotonic()
            (await http.post(f"/cancel/{job_id}")).raise_for_status()
            await asyncio.wait_for(asyncio.gather(*tasks), 300)
        delays = sorted((t - sent) * 1000 for t in arrivals)
        return {"idle": idle, "streams": with_streams, "delay_min": delays[0],
                "delay_median": statistics.median(delays), "delay_max": delays[-1]}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--window", type=float, default=10.0, help="seconds per CPU window")
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL URL; '' for SQLite only")
    parser.add_argument("--baseline-src", default="", help="also measure the server from this src directory "
                                                          "(e.g. an export of the commit before push)")
    args = parser.parse_args()
    modes: list[tuple[str, bool, str | None]] = [("on", True, None), ("off", False, None)]
    if args.baseline_src:
        modes.append(("base", False, args.baseline_src))
    kinds = ["sqlite"] + (["postgresql"] if args.pg else [])
    print(f"push benchmark: {args.streams} idle SSE streams, {args.window:.0f} s windows, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    print(f"{'database':<11} {'push':<5} {'idle API %':>10} {f'{args.streams} streams %':>14} "
          f"{'delay ms min/med/max':>24}")
    with tempfile.TemporaryDirectory(prefix="framepack-push-bench-") as tmp:
        for kind in kinds:
            for label, push, source in modes:
                with database(kind, args.pg) as url:
                    row = asyncio.run(measure(url, push, args.streams, args.window, Path(tmp), source))
                delay = f"{row['delay_min']:.0f}/{row['delay_median']:.0f}/{row['delay_max']:.0f}"
                print(f"{kind:<11} {label:<5} {row['idle']:>10.2f} {row['streams']:>14.2f} "
                      f"{delay:>24}", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
