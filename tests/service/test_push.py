"""Push instead of polling, end to end on loopback: an idle worker on a very long poll interval takes a
new job at once only because it is woken (PostgreSQL NOTIFY, SQLite local sockets), and the event
streams of one API process share one reader of the event log."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn

from framepack_api.api.app import create_app
from framepack_api.settings import Settings

from support.server import Server, free_port, png_bytes

# Nothing but a wake-up makes these workers look at the queue within two minutes: no poll, no
# reaper round, no heartbeat of their own row.
SLEEPY = {"FRAMEPACK_API_POLL_INTERVAL_SECONDS": "300", "FRAMEPACK_API_REAP_INTERVAL_SECONDS": "300",
          "FRAMEPACK_API_HEARTBEAT_SECONDS": "120", "FRAMEPACK_API_LEASE_SECONDS": "600"}
PROMPT = 60.0  # far below the 120 s the worker would otherwise sleep, generous for a loaded machine


def _claimed_within(api: Server, job_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = httpx.get(f"{api.url}/status/{job_id}", timeout=10).json()
        if status["status"] != "pending":
            return status
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still pending after {timeout}s: the worker was not woken\n{api.log()}")


def test_an_idle_postgresql_worker_is_woken_by_notify(tmp_path: Path, pg_url: str) -> None:
    api = Server(tmp_path / "data", workers=0, env={"FRAMEPACK_API_DATABASE_URL": pg_url}).start()
    env = {**api.env(), **SLEEPY, "FRAMEPACK_API_WORKERS": "0"}
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen([sys.executable, "-m", "framepack_api", "worker"], env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        # Idle: its model is loaded, it has looked at the empty queue and gone to sleep.
        api.wait_until(lambda h: any(w["state"] == "idle" for w in h["workers"]), timeout=180)
        job_id = api.submit()
        assert _claimed_within(api, job_id, PROMPT)["status"] in ("processing", "completed")
        assert api.wait_for(job_id, timeout=120)["status"] == "completed"
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        log.close()
        api.stop()


def test_an_idle_embedded_worker_on_sqlite_is_woken_through_its_socket(tmp_path: Path) -> None:
    api = Server(tmp_path / "data", workers=1, env=SLEEPY).start()
    try:
        api.wait_until(lambda h: any(w["state"] == "idle" for w in h["workers"]), timeout=180)
        job_id = api.submit()
        assert _claimed_within(api, job_id, PROMPT)["status"] in ("processing", "completed")
        assert api.wait_for(job_id, timeout=120)["status"] == "completed"
    finally:
        api.stop()


# -- one shared reader ----------------------------------------------------------------------------

STREAMS = 20


class InProcessServer:
    """The real app under uvicorn on loopback, in a thread, so that the test can count its queries."""

    def __init__(self, settings: Settings) -> None:
        self.app = create_app(settings)
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> InProcessServer:
        self.thread.start()
        _wait(lambda: self.server.started, "the server did not start")
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


def _wait(check: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(what)
        time.sleep(0.05)


@pytest.fixture(params=["postgresql", "sqlite"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else ""
    yield Settings(data_dir=tmp_path / "data", database_url=url, model="tiny", workers=0, ui_enabled=False,
                   min_free_disk_mb=0)


def test_streams_of_one_api_process_share_one_reader_of_the_event_log(settings: Settings) -> None:
    with InProcessServer(settings) as srv:
        state = srv.app.state.framepack
        assert state.listener is not None and state.listener.live
        reads = {"n": 0}

        def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if statement.lstrip().upper().startswith("SELECT") and "job_events" in statement:
                reads["n"] += 1

        sa.event.listen(state.engine, "before_cursor_execute", count)
        r = httpx.post(f"{srv.url}/generate", data={"prompt": "p", "resolution": "64"},
                       files={"image": ("in.png", png_bytes(), "image/png")}, timeout=30)
        assert r.status_code == 200, r.text
        job_id = r.json()["job_id"]
        seen: list[list[str]] = [[] for _ in range(STREAMS)]

        def follow(index: int) -> None:
            with httpx.stream("GET", f"{srv.url}/events", timeout=httpx.Timeout(10, read=120)) as response:
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        seen[index].append(line.removeprefix("event: "))
                        if seen[index][-1] == "cancelled":
                            return

        threads = [threading.Thread(target=follow, args=(i,), daemon=True) for i in range(STREAMS)]
        for thread in threads:
            thread.start()
        # Every stream has subscribed (from the log's end: nothing of its own left to read).
        _wait(lambda: len(state.events.subscriptions) == STREAMS, "not every stream subscribed")
        before = reads["n"]
        assert httpx.post(f"{srv.url}/cancel/{job_id}", timeout=30).json()["status"] == "cancelled"
        for thread in threads:
            thread.join(timeout=120)
        assert seen == [["status", "cancelled"]] * STREAMS
        # One reader: a query or a few for the wake-up (and a poll tick on a slow machine), however
        # many streams; twenty streams polling on their own would have made at least twenty.
        delivered_with = reads["n"] - before
        assert delivered_with < STREAMS // 2, delivered_with
        assert state.events.reads >= 1
