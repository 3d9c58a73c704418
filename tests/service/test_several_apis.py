"""Two API processes and three workers on one PostgreSQL database (issue 12, point 7).

No proxy: clients talk to either API. Jobs are submitted to both, their events are streamed from
the other one, one API and one worker are killed with SIGKILL while jobs run, and every job still
completes exactly once, with its result downloadable from the API that is left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from framepack_api.jobs.db import create_engine
from framepack_api.jobs.tables import job_events, jobs, workers

from support.models import link_tiny_model
from support.server import Server

# One section of 20 steps at 64 px: short, with steps enough to kill a worker in the first half.
FIELDS = {"video_length": 0.3, "latent_window_size": 2, "steps": 20, "resolution": 64, "prompt": "a test"}
# A lease long enough that a starved heartbeat on a loaded machine does not requeue a live job.
LEASE = {"FRAMEPACK_API_LEASE_SECONDS": "15", "FRAMEPACK_API_HEARTBEAT_SECONDS": "1"}


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.05)
    return value


class EventReader(threading.Thread):
    """Follows /events/{job_id} on one API until the stream ends (terminal event, or the API died)."""

    def __init__(self, url: str, job_id: str, after: int = 0) -> None:
        super().__init__(daemon=True)
        self.url, self.job_id, self.after = url, job_id, after
        self.events: list[dict[str, Any]] = []
        self.broken = False

    def run(self) -> None:
        headers = {"Last-Event-ID": str(self.after)} if self.after else {}
        try:
            with httpx.stream("GET", f"{self.url}/events/{self.job_id}", headers=headers,
                              timeout=httpx.Timeout(10, read=120)) as response:
                assert response.status_code == 200
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        self.events.append(json.loads(line[len("data: "):]))
        except httpx.HTTPError:
            self.broken = True

    @property
    def last_id(self) -> int:
        return int(self.events[-1]["event_id"]) if self.events else self.after


@pytest.mark.timeout(900)  # five process starts and a lease expiry, on a machine that may be very loaded
def test_two_apis_three_workers_kill_one_of_each_every_job_completes_once(tmp_path: Path, pg_url: str) -> None:
    data = link_tiny_model(tmp_path / "data")  # one data directory: shared storage is another point
    env = {"FRAMEPACK_API_DATABASE_URL": pg_url, **LEASE}
    api_a = Server(data, workers=0, env=env).start(timeout=420)  # it creates the schema
    api_b = Server(data, workers=0, env=env)
    worker_logs = [(tmp_path / f"worker-{i}.log").open("wb") for i in range(3)]
    # The workers load their models while the second API starts.
    procs = [subprocess.Popen([sys.executable, "-m", "framepack_api", "worker"], env=api_a.env(),
                              stdout=log, stderr=subprocess.STDOUT) for log in worker_logs]
    engine = create_engine(pg_url)
    try:
        api_b.start(timeout=420)
        api_b.wait_until(lambda h: h["workers_alive"] == 3, timeout=420)
        submitted = {}  # job id -> the API it was submitted to
        for i in range(6):
            api = (api_a, api_b)[i % 2]
            submitted[api.submit(**{**FIELDS, "seed": i})] = api
        # Each job seen from the other API at once, and its events followed there.
        readers = {}
        for job_id, api in submitted.items():
            other = api_b if api is api_a else api_a
            assert httpx.get(f"{other.url}/status/{job_id}", timeout=10).json()["job_id"] == job_id
            readers[job_id] = EventReader(other.url, job_id)
            readers[job_id].start()

        def running() -> list[Any]:
            with engine.connect() as conn:
                return list(conn.execute(sa.select(jobs.c.id, jobs.c.worker_id, workers.c.pid)
                                         .join(workers, workers.c.id == jobs.c.worker_id)
                                         .where(jobs.c.status == "processing", jobs.c.progress > 0,
                                                jobs.c.progress < 50)).all())

        victim_job, _, victim_pid = wait_for(running, 300, "a job in its first half")[0]
        assert api_a.proc is not None
        os.kill(api_a.proc.pid, signal.SIGKILL)
        os.kill(victim_pid, signal.SIGKILL)
        assert api_a.proc.wait(timeout=30) == -signal.SIGKILL
        victim = next(p for p in procs if p.pid == victim_pid)
        assert victim.wait(timeout=30) == -signal.SIGKILL

        # The streams on the dead API broke; resume each on the other one from its last event.
        for job_id, reader in list(readers.items()):
            reader.join(timeout=300)
            assert not reader.is_alive(), f"events of {job_id} still streaming"
            if reader.broken:
                assert reader.url == api_a.url
                resumed = EventReader(api_b.url, job_id, after=reader.last_id)
                resumed.run()
                assert not resumed.broken
                reader.events += resumed.events
        finals = {job_id: api_b.wait_for(job_id, timeout=180) for job_id in submitted}
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)
        for log in worker_logs:
            log.close()
        api_a.stop()
        if sys.exc_info()[0] is not None:
            api_b.stop()
    try:
        check_exactly_once(data, engine, api_b, submitted, victim_job, victim_pid, procs, finals, readers)
    finally:
        api_b.stop()


def check_exactly_once(data: Path, engine: sa.Engine, api_b: Server, submitted: dict[str, Server],
                       victim_job: str, victim_pid: int, procs: list[subprocess.Popen[bytes]],
                       finals: dict[str, dict[str, Any]], readers: dict[str, EventReader]) -> None:
    assert {job_id: f["status"] for job_id, f in finals.items()} == dict.fromkeys(submitted, "completed")
    with engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(sa.select(jobs)).all()}
        completions = dict(conn.execute(sa.select(job_events.c.job_id, sa.func.count())
                                        .where(job_events.c.kind == "completed")
                                        .group_by(job_events.c.job_id)).all())
    engine.dispose()
    assert set(rows) == set(submitted)
    # The killed worker's job ran again; every job, that one included, completed exactly once.
    assert rows[victim_job].attempt >= 2
    assert completions == dict.fromkeys(submitted, 1)
    assert [w for w in procs if w.pid != victim_pid and w.returncode != 0] == []  # the others stopped cleanly

    with httpx.Client(base_url=api_b.url, timeout=30) as client:
        for job_id, row in rows.items():
            assert row.status == "completed" and row.worker_id is not None
            stored = data / "files" / row.result["video"]
            # On disk too, one result: the completing attempt's own directory, nothing of the other.
            assert [d.name for d in (data / "files" / "outputs" / job_id).iterdir()] == [str(row.attempt)]
            body = client.get(f"/result/{job_id}")
            assert body.status_code == 200 and body.headers["content-type"] == "video/mp4"
            assert body.content == stored.read_bytes() and body.content[4:8] == b"ftyp"
            # The event stream, stitched across APIs, has every event once and ends completed.
            events = readers[job_id].events
            ids = [int(e["event_id"]) for e in events]
            assert ids == sorted(set(ids)), ids
            assert [e["kind"] for e in events].count("completed") == 1 and events[-1]["kind"] == "completed"
