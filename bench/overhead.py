"""What the job service costs on top of the model: figures and ratios, never pass/fail.

(a) End-to-end time of a video job through the service (POST /generate → GET /status says
    completed) against two baselines measured in this same run, in this process, on the same
    inputs with the tiny model (model loading excluded from both):
      raw      the bare ``model.pipe(...)`` call with exactly the arguments ``generate_video`` uses;
      gen      ``generate_video(...)``: pipeline + MP4 + thumbnail writing.
    The job's own ``started_at → finished_at`` (from /status) separates the worker's run time from
    queueing, claiming and polling.
(b) ``GET /status/{id}`` latency (p50/p99) and requests/s under C concurrent clients, on an idle
    server and while the worker runs a long job; ratio busy/idle.

    .venv/bin/python bench/overhead.py            # full run (about 3-4 minutes on 2 cores)
    .venv/bin/python bench/overhead.py --quick    # fewer repeats, shorter load test
    .venv/bin/python bench/overhead.py --json     # also print the figures as JSON
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import io
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import numpy as np
from PIL import Image

from bench._server import ServerProcess

TERMINAL = ("completed", "failed", "cancelled")
SEED = 31337
PROMPT = "The girl dances gracefully, with clear movements, full of charm."


@dataclass(frozen=True)
class Size:
    name: str
    resolution: int
    steps: int
    latent_window_size: int
    video_length: float

    def params(self) -> dict[str, Any]:
        # use_teacache off on both sides: the first-block cache would make the two do different work.
        return {"prompt": PROMPT, "seed": SEED, "resolution": self.resolution, "steps": self.steps,
                "latent_window_size": self.latent_window_size, "video_length": self.video_length,
                "use_teacache": False}


SIZES = (
    Size("small", resolution=64, steps=2, latent_window_size=2, video_length=0.3),
    Size("medium", resolution=128, steps=4, latent_window_size=3, video_length=0.6),
    Size("large", resolution=128, steps=12, latent_window_size=5, video_length=1.3),
)
# The job that keeps the worker busy during the load test: far longer than the test; cancelled after.
LONG_JOB = {"prompt": PROMPT, "seed": SEED, "resolution": 128, "steps": 60, "latent_window_size": 9,
            "video_length": 30.0, "use_teacache": False}


# -- statistics -----------------------------------------------------------------------------------

def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else float("nan")


def summary(values: list[float]) -> dict[str, float]:
    return {"median": pct(values, 50), "p90": pct(values, 90), "min": min(values, default=float("nan")),
            "n": len(values)}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f}"


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- inputs ---------------------------------------------------------------------------------------

def input_png() -> bytes:
    """A deterministic 160×120 RGB gradient as PNG bytes (4:3, so a landscape bucket)."""
    y, x = np.mgrid[0:120, 0:160]
    rgb = np.stack([x * 255 // 159, y * 255 // 119, (x + y) * 255 // 278], axis=-1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG")
    return buf.getvalue()


# -- (a) baselines in this process -----------------------------------------------------------------

class _PipeSpy:
    """Stands in for ``model.pipe`` during one ``generate_video`` call to record the call's kwargs."""

    def __init__(self, pipe: Any) -> None:
        object.__setattr__(self, "_pipe", pipe)
        object.__setattr__(self, "recorded", None)

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_pipe"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_pipe"), name, value)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        object.__setattr__(self, "recorded", dict(kwargs))
        return object.__getattribute__(self, "_pipe")(*args, **kwargs)


@dataclass
class Baseline:
    raw: list[float] = field(default_factory=list)
    gen: list[float] = field(default_factory=list)
    gen_timings: list[dict[str, float]] = field(default_factory=list)
    frames: int = 0
    width: int = 0
    height: int = 0
    sections: int = 0


def measure_baselines(data_dir: Path, png: bytes, sizes: tuple[Size, ...],
                      repeats: int) -> dict[str, Baseline]:
    import torch

    from framepack_api.backends.base import RunContext
    from framepack_api.backends.framepack.loader import load_model
    from framepack_api.backends.framepack.video import generate_video
    from framepack_api.params import VideoParams
    from framepack_api.settings import Settings

    t0 = time.perf_counter()
    model = load_model(Settings(model="tiny", data_dir=data_dir, _env_file=None))  # type: ignore[call-arg]
    log(f"  tiny model loaded in {time.perf_counter() - t0:.1f}s (not counted); torch threads "
        f"{torch.get_num_threads()}")
    image = Image.open(io.BytesIO(png))
    image.load()
    out = data_dir / "baseline-out"
    results: dict[str, Baseline] = {}
    try:
        for size in sizes:
            params = VideoParams.model_validate(size.params())
            ctx = RunContext(workdir=out)
            # Record the exact pipeline arguments generate_video uses (this call is also the warm-up).
            real_pipe = model.pipe
            spy = _PipeSpy(real_pipe)
            model.pipe = spy
            try:
                first = generate_video(model, params, image, None, out, ctx)
            finally:
                model.pipe = real_pipe
            kwargs = spy.recorded
            if kwargs is None:
                raise RuntimeError("generate_video did not call model.pipe(...); cannot time the raw call")
            kwargs = {k: v for k, v in kwargs.items() if k != "callback_on_step_end"}
            seed = first.seed

            def raw_call(kwargs: dict[str, Any] = kwargs, seed: int = seed, pipe: Any = real_pipe) -> None:
                call = dict(kwargs, generator=torch.Generator(device="cpu").manual_seed(seed))
                pipe(**call)

            raw_call()  # warm-up of the raw path too
            b = Baseline(frames=first.info.get("frames", 0), width=first.info.get("width", 0),
                         height=first.info.get("height", 0), sections=first.info.get("sections", 0))
            for _ in range(repeats):  # interleaved, so drift in machine load hits both alike
                t = time.perf_counter()
                raw_call()
                b.raw.append(time.perf_counter() - t)
                t = time.perf_counter()
                result = generate_video(model, params, image, None, out, ctx)
                b.gen.append(time.perf_counter() - t)
                b.gen_timings.append(dict(result.info.get("timings", {})))
            results[size.name] = b
            log(f"  {size.name}: raw {np.median(b.raw):.3f}s, generate_video {np.median(b.gen):.3f}s "
                f"({b.width}x{b.height}, {b.frames} frames, {b.sections} sections)")
    finally:
        del model
        gc.collect()
    return results


# -- (a) jobs through the service -----------------------------------------------------------------

def parse_ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


@dataclass
class JobTiming:
    e2e: float  # POST sent → first /status that says completed (client clock)
    submit: float  # POST round trip
    queue: float  # created_at → started_at (server clocks): waiting + claim
    run: float  # started_at → finished_at: the worker's run of the job
    detect: float  # finished_at → the completed /status arrived: poll latency
    polls: int


def run_job(http: httpx.Client, png: bytes, params: dict[str, Any], poll: float,
            timeout: float = 300.0) -> tuple[JobTiming, dict[str, Any]]:
    data = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in params.items()}
    wall0 = time.time()
    t0 = time.perf_counter()
    r = http.post("/generate", data=data, files={"image": ("image.png", png, "image/png")})
    t_sub = time.perf_counter()
    if r.status_code != 200:
        raise RuntimeError(f"POST /generate -> {r.status_code}: {r.text}")
    job_id = r.json()["job_id"]
    polls = 0
    while True:
        time.sleep(poll)
        s = http.get(f"/status/{job_id}")
        polls += 1
        t_done = time.perf_counter()
        s.raise_for_status()
        status = s.json()
        if status["status"] in TERMINAL:
            break
        if t_done - t0 > timeout:
            raise TimeoutError(f"job {job_id} still {status['status']} after {timeout}s")
    if status["status"] != "completed":
        raise RuntimeError(f"job {job_id} {status['status']}: {status.get('error')}")
    created, started, finished = (parse_ts(status.get(k))
                                  for k in ("created_at", "started_at", "finished_at"))
    e2e = t_done - t0
    wall_done = wall0 + e2e
    assert created is not None and started is not None and finished is not None
    return JobTiming(e2e=e2e, submit=t_sub - t0, queue=started - created, run=finished - started,
                     detect=wall_done - finished, polls=polls), status


def measure_service(server: ServerProcess, png: bytes, sizes: tuple[Size, ...], repeats: int,
                    poll: float) -> tuple[dict[str, list[JobTiming]], str]:
    results: dict[str, list[JobTiming]] = {}
    last_id = ""
    with httpx.Client(base_url=server.base_url, timeout=60.0, trust_env=False) as http:
        for size in sizes:
            run_job(http, png, size.params(), poll)  # warm-up: the worker's first job of this size
            timings = []
            for _ in range(repeats):
                timing, status = run_job(http, png, size.params(), poll)
                timings.append(timing)
                last_id = status["job_id"]
            results[size.name] = timings
            log(f"  {size.name}: e2e median {np.median([t.e2e for t in timings]):.3f}s, "
                f"run {np.median([t.run for t in timings]):.3f}s, "
                f"queue {np.median([t.queue for t in timings]):.3f}s")
    return results, last_id


# -- (b) /status under load -----------------------------------------------------------------------

@dataclass
class LoadResult:
    latencies: list[float]
    errors: int
    seconds: float

    def figures(self) -> dict[str, float]:
        return {"requests": len(self.latencies), "errors": self.errors, "seconds": round(self.seconds, 3),
                "rps": len(self.latencies) / self.seconds if self.seconds else float("nan"),
                "p50_ms": pct(self.latencies, 50) * 1000, "p90_ms": pct(self.latencies, 90) * 1000,
                "p99_ms": pct(self.latencies, 99) * 1000, "max_ms": max(self.latencies, default=0.0) * 1000}


async def _hammer(base_url: str, path: str, clients: int, seconds: float, max_requests: int) -> LoadResult:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30.0, trust_env=False) as http:
        # Open the connections before the clock starts.
        await asyncio.gather(*(http.get(path) for _ in range(clients)), return_exceptions=True)
        start = time.perf_counter()
        deadline = start + seconds

        async def client() -> None:
            nonlocal errors
            while time.perf_counter() < deadline and len(latencies) + errors < max_requests:
                t = time.perf_counter()
                try:
                    r = await http.get(path)
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - t)
                else:
                    errors += 1

        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - start
    return LoadResult(latencies, errors, elapsed)


def hammer(base_url: str, path: str, clients: int, seconds: float, max_requests: int) -> LoadResult:
    return asyncio.run(_hammer(base_url, path, clients, seconds, max_requests))


def progress_rate(http: httpx.Client, job_id: str, seconds: float, during: Callable[[], Any] | None = None,
                  ) -> tuple[float, Any, str]:
    """Percent of the job done per second over a window; runs ``during`` in that window if given."""
    s0 = http.get(f"/status/{job_id}").json()
    t0 = time.perf_counter()
    out = None
    if during is not None:
        out = during()
    else:
        time.sleep(seconds)
    s1 = http.get(f"/status/{job_id}").json()
    elapsed = time.perf_counter() - t0
    return (s1["progress"] - s0["progress"]) / elapsed, out, s1["status"]


def cpu_seconds(pid: int | None) -> float | None:
    """user + system CPU time of a process (all its threads), from /proc; None where unavailable."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_delta(pid: int | None, before: float | None) -> float | None:
    after = cpu_seconds(pid)
    return after - before if after is not None and before is not None else None


def measure_load(server: ServerProcess, png: bytes, idle_job_id: str, clients: int, seconds: float,
                 max_requests: int) -> dict[str, Any]:
    out: dict[str, Any] = {"clients": clients, "seconds": seconds}
    api_pid = server.proc.pid if server.proc is not None else None
    worker_pid = min(server.worker_pids) if len(server.worker_pids) == 1 else None
    # What an idle service costs: the worker polls the queue, the API runs its reaper.
    quiet = min(seconds, 5.0)
    api0, worker0, t = cpu_seconds(api_pid), cpu_seconds(worker_pid), time.perf_counter()
    time.sleep(quiet)
    elapsed = time.perf_counter() - t
    out["idle_cpu_pct"] = {name: (None if d is None else 100 * d / elapsed) for name, d in
                           (("api", cpu_delta(api_pid, api0)), ("worker", cpu_delta(worker_pid, worker0)))}
    log(f"  idle: {clients} clients on /status of a completed job for {seconds:.0f}s")
    api0 = cpu_seconds(api_pid)
    idle = hammer(server.base_url, f"/status/{idle_job_id}", clients, seconds, max_requests)
    out["idle"] = idle.figures()
    d = cpu_delta(api_pid, api0)
    out["idle"]["api_cpu_ms_per_request"] = (1000 * d / len(idle.latencies)
                                             if d and idle.latencies else None)
    with httpx.Client(base_url=server.base_url, timeout=60.0, trust_env=False) as http:
        data = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in LONG_JOB.items()}
        r = http.post("/generate", data=data, files={"image": ("image.png", png, "image/png")})
        r.raise_for_status()
        job_id = r.json()["job_id"]
        deadline = time.monotonic() + 60
        while True:  # until it is sampling (past the first progress write)
            s = http.get(f"/status/{job_id}").json()
            if s["status"] == "processing" and s["progress"] > 0:
                break
            if s["status"] in TERMINAL or time.monotonic() > deadline:
                raise RuntimeError(f"long job did not start sampling: {s}")
            time.sleep(0.05)
        server.refresh_workers()
        quiet_rate, _, _ = progress_rate(http, job_id, seconds)
        log(f"  busy: {clients} clients on /status of the running job for {seconds:.0f}s")
        api0 = cpu_seconds(api_pid)
        busy_rate, busy, status_after = progress_rate(
            http, job_id, seconds,
            during=lambda: hammer(server.base_url, f"/status/{job_id}", clients, seconds, max_requests))
        out["busy"] = busy.figures()
        d = cpu_delta(api_pid, api0)
        out["busy"]["api_cpu_ms_per_request"] = (1000 * d / len(busy.latencies)
                                                 if d and busy.latencies else None)
        out["busy_job_still_processing"] = status_after == "processing"
        out["job_progress_pct_per_s"] = {"quiet": quiet_rate, "under_load": busy_rate}
        # Cancel it: how long until a running job reports cancelled.
        t = time.perf_counter()
        http.post(f"/cancel/{job_id}").raise_for_status()
        while True:
            s = http.get(f"/status/{job_id}").json()
            if s["status"] in TERMINAL or time.perf_counter() - t > 120:
                break
            time.sleep(0.02)
        out["cancel_seconds"] = time.perf_counter() - t
        out["cancel_final_status"] = s["status"]
    out["ratio_busy_idle"] = {
        "p50": ratio(out["busy"]["p50_ms"], out["idle"]["p50_ms"]),
        "p99": ratio(out["busy"]["p99_ms"], out["idle"]["p99_ms"]),
        "rps": ratio(out["busy"]["rps"], out["idle"]["rps"]),
    }
    return out


# -- reporting ------------------------------------------------------------------------------------

def report(args: argparse.Namespace, sizes: tuple[Size, ...], base: dict[str, Baseline],
           svc: dict[str, list[JobTiming]], load: dict[str, Any], env: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {"environment": env, "repeats": args.repeats, "poll_interval_s": args.poll,
                           "sizes": {}, "status_load": load}
    print()
    print("framepack-api service overhead (figures, not pass/fail)")
    print(f"  machine: {env['cpus']} CPUs, {env['platform']}, python {env['python']}, torch {env['torch']}, "
          f"diffusers {env['diffusers']}; model tiny on CPU")
    print(f"  load average before: {env['loadavg_before']}   after: {env['loadavg_after']}")
    print(f"  repeats {args.repeats} per size (after 1 warm-up), client polls /status every "
          f"{args.poll * 1000:.0f} ms, worker poll interval {env['worker_poll_interval_s']} s")
    print()
    print("(a) one video job: times in ms, median / p90")
    hdr = (f"{'size':8} {'px':>7} {'frames':>6} | {'raw pipe':>17} | {'generate_video':>17} | "
           f"{'service e2e':>17} | {'worker run':>17} | {'queue+claim':>8} {'poll lag':>8} {'POST':>6}")
    print(hdr)
    print("-" * len(hdr))
    for size in sizes:
        b, jobs = base[size.name], svc[size.name]
        raw, gen = summary(b.raw), summary(b.gen)
        e2e, run = summary([j.e2e for j in jobs]), summary([j.run for j in jobs])
        queue, detect = summary([j.queue for j in jobs]), summary([j.detect for j in jobs])
        submit = summary([j.submit for j in jobs])
        px = f"{b.width}x{b.height}"
        print(f"{size.name:8} {px:>7} {b.frames:>6} | {ms(raw['median'])} {ms(raw['p90'])} | "
              f"{ms(gen['median'])} {ms(gen['p90'])} | {ms(e2e['median'])} {ms(e2e['p90'])} | "
              f"{ms(run['median'])} {ms(run['p90'])} | {ms(queue['median'])} {ms(detect['median'])} "
              f"{submit['median'] * 1000:6.1f}")
        doc["sizes"][size.name] = {
            "params": size.params(), "width": b.width, "height": b.height, "frames": b.frames,
            "sections": b.sections, "raw_s": raw, "generate_video_s": gen, "service_e2e_s": e2e,
            "worker_run_s": run, "queue_claim_s": queue, "poll_lag_s": detect, "submit_s": submit,
            "generate_video_stage_medians_s": {
                k: pct([t.get(k, 0.0) for t in b.gen_timings], 50) for k in b.gen_timings[0]
            } if b.gen_timings else {},
            "ratios_median": {
                "e2e_over_raw": ratio(e2e["median"], raw["median"]),
                "e2e_over_generate_video": ratio(e2e["median"], gen["median"]),
                "worker_run_over_generate_video": ratio(run["median"], gen["median"]),
                "generate_video_over_raw": ratio(gen["median"], raw["median"]),
            },
            "overhead_ms_median": (e2e["median"] - gen["median"]) * 1000,
        }
    print()
    print("    ratios of medians:  e2e/raw   e2e/generate_video   worker run/generate_video   "
          "generate_video/raw   e2e - generate_video")
    for size in sizes:
        r = doc["sizes"][size.name]["ratios_median"]
        print(f"    {size.name:8}          {r['e2e_over_raw']:6.2f}   {r['e2e_over_generate_video']:18.2f}   "
              f"{r['worker_run_over_generate_video']:25.2f}   {r['generate_video_over_raw']:18.2f}   "
              f"{doc['sizes'][size.name]['overhead_ms_median']:8.0f} ms")
    print()
    print(f"(b) GET /status/{{id}}: {load['clients']} concurrent clients, {load['seconds']:.0f} s each")
    print(f"    {'':6} {'requests':>8} {'errors':>6} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
          f"{'max ms':>8}")
    for name in ("idle", "busy"):
        f = load[name]
        print(f"    {name:6} {f['requests']:8d} {f['errors']:6d} {f['rps']:8.0f} {f['p50_ms']:8.1f} "
              f"{f['p90_ms']:8.1f} {f['p99_ms']:8.1f} {f['max_ms']:8.1f}")
    cpu = [load[n].get("api_cpu_ms_per_request") for n in ("idle", "busy")]
    if None not in cpu:
        print(f"    API process CPU per /status request: {cpu[0]:.1f} ms idle, {cpu[1]:.1f} ms busy")
    ic = load.get("idle_cpu_pct", {})
    if ic.get("worker") is not None:
        print(f"    idle service, no requests: API {ic['api']:.1f}% of a core, worker {ic['worker']:.1f}% "
              f"(queue polling)")
    rb = load["ratio_busy_idle"]
    ended = "" if load["busy_job_still_processing"] else "  (warning: the long job ended before the test)"
    print(f"    busy/idle: p50 x{rb['p50']:.2f}, p99 x{rb['p99']:.2f}, req/s x{rb['rps']:.2f}{ended}")
    pr = load["job_progress_pct_per_s"]
    print(f"    the long job's progress: {pr['quiet']:.2f} %/s quiet, {pr['under_load']:.2f} %/s while "
          f"/status was hammered (x{ratio(pr['under_load'], pr['quiet']):.2f})")
    print(f"    cancel of the running job: {load['cancel_final_status']} "
          f"after {load['cancel_seconds']:.2f} s")
    if env.get("server_log_problems"):
        print(f"    server log: {len(env['server_log_problems'])} WARNING/ERROR lines, first: "
              f"{env['server_log_problems'][0][:200]}")
    return doc


def environment() -> dict[str, Any]:
    import diffusers
    import torch

    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "diffusers": diffusers.__version__,
            "cuda": bool(torch.cuda.is_available())}


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


# -- main -----------------------------------------------------------------------------------------

@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    def _raise(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    old_term = signal.signal(signal.SIGTERM, _raise)
    # Ctrl-C raises KeyboardInterrupt even where SIGINT was inherited as ignored (a background job).
    old_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="3 repeats, two sizes, 3 s load tests")
    p.add_argument("--repeats", type=int, default=None, help="jobs per size (default 10; 3 with --quick)")
    p.add_argument("--clients", type=int, default=32, help="concurrent /status clients (default 32)")
    p.add_argument("--load-seconds", type=float, default=None, help="length of each load test (default 10)")
    p.add_argument("--max-requests", type=int, default=200_000, help="bound on requests per load test")
    p.add_argument("--poll", type=float, default=0.015,
                   help="client /status poll interval, s (default 0.015)")
    p.add_argument("--worker-poll", type=float, default=None,
                   help="server's FRAMEPACK_API_POLL_INTERVAL_SECONDS (default: the server's own, 0.5)")
    p.add_argument("--json", action="store_true", help="also print the figures as JSON")
    p.add_argument("--server-log", type=Path, default=None, help="keep the server's log at this path")
    args = p.parse_args(argv)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 10
    if args.load_seconds is None:
        args.load_seconds = 3.0 if args.quick else 10.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = SIZES[:2] if args.quick else SIZES
    png = input_png()
    tmp = Path(tempfile.mkdtemp(prefix="framepack-bench-"))
    server: ServerProcess | None = None
    env = environment()
    env["loadavg_before"] = loadavg()
    try:
        with sigterm_as_exit():
            data_dir = tmp / "data"
            log(f"[1/3] baselines in this process ({args.repeats} repeats per size)")
            base = measure_baselines(data_dir, png, sizes, args.repeats)
            extra = {}
            if args.worker_poll is not None:
                extra["FRAMEPACK_API_POLL_INTERVAL_SECONDS"] = str(args.worker_poll)
            from framepack_api.settings import Settings

            env["worker_poll_interval_s"] = args.worker_poll or Settings.model_fields[
                "poll_interval_seconds"].default
            server = ServerProcess(data_dir, workers=1, model="tiny", env=extra, log_path=tmp / "server.log")
            log(f"[2/3] service on {server.base_url}: {args.repeats} jobs per size, sequential")
            t = time.perf_counter()
            server.start()
            server.wait_ready()
            env["server_ready_s"] = round(time.perf_counter() - t, 2)
            svc, last_id = measure_service(server, png, sizes, args.repeats, args.poll)
            log("[3/3] GET /status under load")
            load = measure_load(server, png, last_id, args.clients, args.load_seconds, args.max_requests)
            env["loadavg_after"] = loadavg()
            server.stop()
            text = server.log_text()
            env["server_log_problems"] = [  # the tiny-model warning is expected; anything else is news
                ln for ln in text.splitlines()
                if ("ERROR" in ln or "WARNING" in ln or "Traceback" in ln) and "TINY" not in ln]
            if args.server_log:
                shutil.copyfile(tmp / "server.log", args.server_log)
            doc = report(args, sizes, base, svc, load, env)
            if args.json:
                print()
                print(json.dumps(doc, indent=2, default=str))
        return 0
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
