"""`GET /status/{id}` throughput against a bare FastAPI route served the same way, same run.

Three servers answer one load generator (bench/loadgen.py: N keep-alive connections, closed loop,
like wrk) in turn, each for ``--seconds``, in ``--rounds`` alternating rounds:

  bare       bench/_bare_server.py: one ``async def`` route returning a small dict, no middleware,
             no database, served by cli.uvicorn_config (access log on, as shipped);
  completed  ``framepack-api serve --workers 0`` (as shipped: request guard, access log, SQLite in
             the data directory unless --database-url): /status of a completed job;
  pending    the same server: /status of a pending job (queue position and ETA, learned from the
             completed one).

Printed per target: requests/s, p50 and p99 latency, the server process's CPU time per request
(from /proc), and the ratio of requests/s to bare. The two framepack-api targets are the same
process; the completed job was made first by a server with one worker, on the same data directory.

    .venv/bin/python bench/status_rate.py                 # 32 connections, 10 s x 2 rounds
    .venv/bin/python bench/status_rate.py --seconds 5 --rounds 1
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from PIL import Image

from bench._server import LOOPBACK, ServerProcess, free_port
from bench.loadgen import LoadResult, load

SMALLEST = {"prompt": "bench", "seed": 1, "resolution": 64, "steps": 1, "latent_window_size": 1,
            "video_length": 0.1, "use_teacache": "false"}


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (90, 120, 200)).save(buf, format="PNG")
    return buf.getvalue()


def submit(base_url: str) -> str:
    files = {"image": ("in.png", png(), "image/png")}
    r = httpx.post(f"{base_url}/generate", data=SMALLEST, files=files, timeout=60, trust_env=False)
    r.raise_for_status()
    return str(r.json()["job_id"])


def wait_status(base_url: str, job_id: str, wanted: str, timeout: float = 300) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = httpx.get(f"{base_url}/status/{job_id}", timeout=30, trust_env=False).json()
        if body["status"] == wanted:
            return dict(body)
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} not {wanted} in {timeout}s")


def cpu_seconds(pid: int) -> float:
    """user + system CPU of one process, from /proc (Linux); 0 elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class BareServer:
    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log = log_path.open("wb")
        script = Path(__file__).resolve().parent / "_bare_server.py"
        env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMEPACK_API_")}
        self.proc = subprocess.Popen([sys.executable, str(script), "--port", str(self.port)], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://{LOOPBACK}:{self.port}/health", trust_env=False).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError("bare server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


def measure(port: int, pid: int, path: str, connections: int, seconds: float) -> tuple[LoadResult, float]:
    before = cpu_seconds(pid)
    result = load(LOOPBACK, port, path, connections=connections, seconds=seconds)
    used = cpu_seconds(pid) - before
    return result, used / max(result.requests, 1) * 1e6  # µs of server CPU per request


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--database-url", default=None, help="default: SQLite in the data directory")
    args = p.parse_args(argv)
    env = {"FRAMEPACK_API_DATABASE_URL": args.database_url} if args.database_url else {}
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    with tempfile.TemporaryDirectory(prefix="fp-rate-") as tmp_dir:
        data = Path(tmp_dir) / "data"
        with ServerProcess(data, workers=1, env=env) as maker:  # a completed job to learn the pace from
            maker.wait_ready()
            done = submit(maker.base_url)
            wait_status(maker.base_url, done, "completed")
        api = ServerProcess(data, workers=0, env=env, log_path=Path(tmp_dir) / "api.log")
        bare = BareServer(Path(tmp_dir) / "bare.log")
        try:
            api.start()
            api.wait_ready()
            waiting = submit(api.base_url)
            pending_body = wait_status(api.base_url, waiting, "pending")
            assert pending_body["queue_position"] == 1 and pending_body["eta_seconds"] is not None, pending_body
            assert api.proc is not None
            targets = {"bare": (bare.port, bare.proc.pid, "/status/x"),
                       "completed": (api.port, api.proc.pid, f"/status/{done}"),
                       "pending": (api.port, api.proc.pid, f"/status/{waiting}")}
            results: dict[str, list[tuple[LoadResult, float]]] = {name: [] for name in targets}
            for _ in range(args.rounds):
                for name, (port, pid, path) in targets.items():
                    results[name].append(measure(port, pid, path, args.connections, args.seconds))
            print(f"body of pending /status: {len(results['pending'][0][0].first_body)} bytes, "
                  f"keys {sorted(json.loads(results['pending'][0][0].first_body))[:6]}...")
        finally:
            api.stop()
            bare.stop()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{args.connections} connections, {args.seconds:.0f} s per target per round, {args.rounds} round(s)")
    print(f"{'target':<11}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'cpu us/req':>12}{'errors':>8}{'x bare':>8}")
    bare_rate = sum(r.rate for r, _ in results["bare"]) / len(results["bare"])
    for name, runs in results.items():
        rate = sum(r.rate for r, _ in runs) / len(runs)
        lat = [x for r, _ in runs for x in r.latencies_ms]
        merged = LoadResult(latencies_ms=lat)
        cpu = sum(c for _, c in runs) / len(runs)
        errors = sum(r.errors for r, _ in runs)
        print(f"{name:<11}{rate:>9.0f}{merged.percentile(50):>9.1f}{merged.percentile(99):>9.1f}"
              f"{cpu:>12.0f}{errors:>8}{rate / bare_rate:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
