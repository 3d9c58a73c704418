"""A database blip does not fail running jobs (issue 11 item 10). On real PostgreSQL, the worker's
own role is refused new connections and its open ones are terminated with pg_terminate_backend
while it runs a job: its lease writes are retried with backoff while the lease holds, and the job
completes; when the outage outlasts the lease, the job is requeued (not failed) and completes on
a second attempt."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
import sqlalchemy as sa

from ..conftest import PG_SERVER
from support.server import Server

JOB = {"steps": 8, "video_length": 1, "latent_window_size": 3, "resolution": 64}


class Blip:
    """A login role for the worker alone, so that an outage hits it and nothing else on the server."""

    def __init__(self, pg_url: str) -> None:
        self.role = f"fp_blip_{uuid.uuid4().hex[:10]}"
        self.schema = unquote(pg_url.rsplit("search_path", 1)[1]).lstrip("=")
        self.url = pg_url.replace("://postgres@", f"://{self.role}@", 1)
        self.admin = sa.create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE ROLE {self.role} LOGIN")

    def grant(self) -> None:
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA {self.schema} TO {self.role}")
            conn.exec_driver_sql(f"GRANT ALL ON ALL TABLES IN SCHEMA {self.schema} TO {self.role}")
            conn.exec_driver_sql(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA {self.schema} TO {self.role}")

    def outage(self, until: Callable[[], bool], least: float, timeout: float = 120.0) -> float:
        """Refuse the role's logins and terminate its sessions until ``until()`` holds (and at least
        ``least`` seconds passed); returns how long it lasted."""
        started = time.monotonic()
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f"ALTER ROLE {self.role} NOLOGIN")
            try:
                while not (until() and time.monotonic() - started >= least):
                    assert time.monotonic() - started < timeout, "the worker never met the outage"
                    conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                         "WHERE usename = :role"), {"role": self.role})
                    time.sleep(0.05)
            finally:
                conn.exec_driver_sql(f"ALTER ROLE {self.role} LOGIN")
        return time.monotonic() - started

    def drop(self) -> None:
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f"ALTER ROLE {self.role} LOGIN")
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :role"),
                         {"role": self.role})
            conn.exec_driver_sql(f"DROP OWNED BY {self.role}")
            conn.exec_driver_sql(f"DROP ROLE {self.role}")
        self.admin.dispose()


@pytest.fixture
def blip(pg_url: str) -> Iterator[Blip]:
    b = Blip(pg_url)
    yield b
    b.drop()


def _run(tmp_path: Path, blip: Blip, pg_url: str, lease: str) -> tuple[Server, subprocess.Popen[bytes], Path]:
    api = Server(tmp_path / "data", workers=0, env={"FRAMEPACK_API_DATABASE_URL": pg_url}).start()
    blip.grant()
    log = tmp_path / "worker.log"
    env = {**api.env(), "FRAMEPACK_API_WORKERS": "0", "FRAMEPACK_API_DATABASE_URL": blip.url,
           "FRAMEPACK_API_LEASE_SECONDS": lease, "FRAMEPACK_API_HEARTBEAT_SECONDS": "1"}
    with log.open("wb") as out:
        worker = subprocess.Popen([sys.executable, "-m", "framepack_api", "worker"], env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
    api.wait_until(lambda h: h["workers_alive"] == 1, timeout=180)
    return api, worker, log


def _stop(api: Server, worker: subprocess.Popen[bytes]) -> None:
    worker.terminate()
    try:
        worker.wait(timeout=60)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
    api.stop()


@pytest.mark.timeout(600)  # two server starts and model loads on a loaded machine
def test_a_blip_within_the_lease_is_retried_and_every_job_completes(tmp_path: Path, pg_url: str,
                                                                    blip: Blip) -> None:
    api, worker, log = _run(tmp_path, blip, pg_url, lease="60")
    try:
        ids = [api.submit(seed=i, **JOB) for i in range(2)]
        api.wait_for(ids[0], ("processing",))
        # Mid-job: the worker has written progress, so it holds open connections to lose.
        lasted = blip.outage(until=lambda: "OperationalError" in log.read_text(errors="replace"), least=4.0)
        finals = [api.wait_for(i, timeout=240) for i in ids]
        text = log.read_text(errors="replace")
        assert [f["status"] for f in finals] == ["completed"] * 2, (finals, text[-3000:])
        assert [f["attempt"] for f in finals] == [1, 1]  # retried in place, never reclaimed
        assert lasted >= 4.0 and "transient database error, retrying" in text
        assert "failed" not in [f["status"] for f in finals] and "OperationalError:" not in \
            "".join(f["error"] or "" for f in finals)
    finally:
        _stop(api, worker)


@pytest.mark.timeout(600)
def test_an_outage_longer_than_the_lease_requeues_the_job_and_it_completes(tmp_path: Path, pg_url: str,
                                                                           blip: Blip) -> None:
    api, worker, log = _run(tmp_path, blip, pg_url, lease="4")
    try:
        job_id = api.submit(seed=5, **{**JOB, "steps": 20})
        api.wait_for(job_id, ("processing",))
        blip.outage(until=lambda: "giving up" in log.read_text(errors="replace"), least=4.0)
        final = api.wait_for(job_id, timeout=240)
        text = log.read_text(errors="replace")
        assert final["status"] == "completed", (final, text[-3000:])
        assert final["attempt"] == 2 and final["seed"] == 5
        assert "abandoning it to the reaper" in text
    finally:
        _stop(api, worker)
