"""Push notifications (jobs/notify.py) on the real databases: a committed change wakes the listener
of its kind, a rolled-back one does not, and the PostgreSQL listener survives losing its connection."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from framepack_api.jobs.db import write_tx
from framepack_api.jobs.notify import Listener, PostgresListener, announce, create_listener
from framepack_api.jobs.store import JobStore, NewJob
from framepack_api.params import JobType

WAIT = 30.0  # generous: the machine is shared; a wake-up normally takes milliseconds


class Heard:
    """The kinds a listener has delivered, with an event per kind to wait on."""

    def __init__(self, listener: Listener) -> None:
        self.kinds: list[str] = []
        self.seen = {kind: threading.Event() for kind in ("event", "job", "webhook")}
        for kind in self.seen:
            listener.on(kind, lambda kind=kind: self._got(kind))

    def _got(self, kind: str) -> None:
        self.kinds.append(kind)
        self.seen[kind].set()

    def reset(self) -> None:
        self.kinds.clear()
        for flag in self.seen.values():
            flag.clear()


@pytest.fixture
def listener(engine: sa.Engine) -> Iterator[Listener]:
    found = create_listener(engine)
    assert found is not None and found.live, "push must be available on Linux for both databases"
    yield found
    found.stop()


def submit(engine: sa.Engine) -> str:
    job, _ = JobStore(engine).submit(NewJob(JobType.video, {"prompt": "p"}, {}))
    return job.id


def test_a_submit_wakes_job_and_event_waiters_and_a_progress_write_only_event_waiters(
        engine: sa.Engine, listener: Listener) -> None:
    heard = Heard(listener)
    heard.reset()  # the wake-up of everything that follows (re)connecting
    job_id = submit(engine)
    assert heard.seen["job"].wait(WAIT) and heard.seen["event"].wait(WAIT)
    store = JobStore(engine)
    job = store.claim("w1")
    assert job is not None and job.id == job_id
    heard.reset()
    store.heartbeat(job, progress=50.0)
    assert heard.seen["event"].wait(WAIT)
    # The claim and the progress write are no news for idle workers (nothing became pending).
    assert not heard.seen["job"].is_set() and not heard.seen["webhook"].is_set()


def test_a_rolled_back_transaction_wakes_nobody(engine: sa.Engine, listener: Listener) -> None:
    heard = Heard(listener)
    heard.reset()
    with pytest.raises(RuntimeError), write_tx(engine) as conn:
        announce(conn, ["webhook"])
        raise RuntimeError("rolled back")
    # A later committed announcement arrives alone: the rolled-back one was never sent.
    with write_tx(engine) as conn:
        announce(conn, ["job"])
    assert heard.seen["job"].wait(WAIT)
    assert "webhook" not in heard.kinds


def test_the_postgresql_listener_reconnects_after_its_connection_is_killed(pg_url: str) -> None:
    from framepack_api.jobs.db import create_engine, upgrade

    engine = create_engine(pg_url)
    upgrade(engine)
    listener = create_listener(engine)
    assert isinstance(listener, PostgresListener) and listener.backend_pid
    try:
        heard = Heard(listener)
        first_pid = listener.backend_pid
        with engine.connect() as conn:
            killed = conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": first_pid}).scalar_one()
        assert killed
        deadline_hit = not _wait_until(lambda: listener.connects >= 2 and listener.live)
        assert not deadline_hit, "the listener did not reconnect"
        assert listener.backend_pid != first_pid
        heard.reset()
        submit(engine)
        assert heard.seen["job"].wait(WAIT), "no wake-up after the reconnection"
    finally:
        listener.stop()
        engine.dispose()


def _wait_until(check: object, timeout: float = WAIT) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False
