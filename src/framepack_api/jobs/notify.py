"""Push instead of polling: a committed change wakes the processes that wait for it.

A transaction that appends to the event log says which kinds of waiter it concerns:

  ``event``    every appended event (event streams of every API process);
  ``job``      a job became pending (submit, requeue): idle workers;
  ``webhook``  a webhook outbox row was added: the API's dispatcher.

On PostgreSQL the transaction itself runs ``pg_notify`` on the channel of its schema, so the
notification is delivered on commit and never for a rollback. On SQLite (one machine by
construction) each listening process binds a UNIX datagram socket in a directory beside the database
file, and the writer sends the kinds to every socket there after its commit. Where neither works
(Windows has no UNIX datagrams) nothing is pushed and every waiter keeps polling; waiters poll
anyway, more slowly while push is live, so a lost notification costs at most one fallback interval.

Each process has at most one :class:`Listener` (one connection or socket), which calls the
callbacks registered per kind from its own thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

KINDS = ("event", "job", "webhook")
CHANNEL_PREFIX = "framepack_"
# Kinds a SQLite transaction has to announce once it commits (a set on the DBAPI connection's info).
_PENDING_KEY = "framepack_wake"
RECONNECT_BACKOFF_MAX = 30.0
PING_SECONDS = 30.0  # how often an idle PostgreSQL listener checks that its connection is alive


def announce(conn: Connection, kinds: Iterable[str]) -> None:
    """Inside a write transaction: wake the waiters for ``kinds`` once (and only if) it commits."""
    kinds = sorted(set(kinds))
    if not kinds:
        return
    if conn.dialect.name == "postgresql":
        # One channel per schema, so that deployments (and tests) sharing a database do not wake
        # each other; PostgreSQL delivers it at commit.
        conn.execute(sa.text("SELECT pg_notify(:prefix || current_schema(), :payload)"),
                     {"prefix": CHANNEL_PREFIX, "payload": ",".join(kinds)})
    elif conn.dialect.name == "sqlite":
        conn.info.setdefault(_PENDING_KEY, set()).update(kinds)


def forget_pending(conn: Connection) -> None:
    """A rolled-back transaction announces nothing."""
    conn.info.pop(_PENDING_KEY, None)


def flush_after_commit(conn: Connection) -> None:
    """After a SQLite commit: send the announced kinds to every listening process of this database."""
    kinds = conn.info.pop(_PENDING_KEY, None)
    if not kinds or not hasattr(socket, "AF_UNIX"):
        return
    wake_dir = socket_dir(conn.engine)
    if wake_dir is None:
        return
    payload = ",".join(sorted(kinds)).encode()
    try:
        names = os.listdir(wake_dir)
    except OSError:
        return  # nobody has ever listened
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sender.setblocking(False)
        for name in names:
            if not name.endswith(".sock"):
                continue
            path = os.path.join(wake_dir, name)
            try:
                sender.sendto(payload, path)
            except ConnectionRefusedError:
                # Its process died without removing it: nobody will ever read it.
                with contextlib.suppress(OSError):
                    os.unlink(path)
            except OSError:
                pass  # a full buffer means that listener already has wake-ups queued


def socket_dir(engine: Engine) -> str | None:
    """Where SQLite listeners bind their sockets: a directory named after the database file, in the
    temporary directory (a socket path beside a deep data directory could pass AF_UNIX's ~100 bytes)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    digest = hashlib.sha256(os.path.abspath(database).encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"framepack-wake-{digest}")


Callback = Callable[[], object]  # its result is ignored


class Listener:
    """One per process: receives wake-ups in a thread and calls the callbacks of their kinds."""

    def __init__(self) -> None:
        self.callbacks: dict[str, list[Callback]] = {kind: [] for kind in KINDS}
        self.stopping = threading.Event()
        self.listening = threading.Event()  # set while wake-ups can arrive
        self.connects = 0  # successful (re)connections, for tests and logs
        self.thread: threading.Thread | None = None

    @property
    def live(self) -> bool:
        """Whether wake-ups arrive now; waiters poll fast while it is not."""
        return self.listening.is_set()

    def on(self, kind: str, callback: Callback) -> None:
        self.callbacks[kind].append(callback)

    def start(self, wait_seconds: float = 10.0) -> Listener:
        """Start the thread and wait (bounded) until it listens, so that a waiter that starts
        right after does not miss the first wake-up."""
        self.thread = threading.Thread(target=self._run, name=self.__class__.__name__, daemon=True)
        self.thread.start()
        self.listening.wait(wait_seconds)
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._interrupt()
        if self.thread is not None:
            self.thread.join(timeout=PING_SECONDS + 5)
        self._close()

    def _dispatch(self, payload: str) -> None:
        for kind in payload.split(","):
            for callback in self.callbacks.get(kind.strip(), ()):
                try:
                    callback()
                except Exception:  # a waiter's bug must not stop the wake-ups of the others
                    log.exception("wake-up callback for %r failed", kind)

    def _wake_all(self) -> None:
        """After a (re)connection: what was committed while deaf is found by one round of everyone."""
        self._dispatch(",".join(KINDS))

    def _run(self) -> None:
        raise NotImplementedError

    def _interrupt(self) -> None:
        """Make a blocked receive return, so that the thread sees ``stopping``."""

    def _close(self) -> None:
        """Release what the listener holds, once its thread has ended."""


class PostgresListener(Listener):
    """LISTEN on the schema's channel over one dedicated connection, reconnecting with backoff."""

    def __init__(self, url: sa.URL) -> None:
        super().__init__()
        self.conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.channel = ""
        self.backend_pid: int | None = None  # of the listening connection (tests terminate it)

    def _run(self) -> None:
        import psycopg
        from psycopg import sql

        delay = 0.5
        while not self.stopping.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=10,
                                     application_name="framepack-api-listener") as conn:
                    schema = conn.execute("SELECT current_schema()").fetchone()
                    self.channel = f"{CHANNEL_PREFIX}{schema[0] if schema else 'public'}"
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    self.backend_pid = conn.info.backend_pid
                    self.connects += 1
                    if self.connects > 1:
                        log.info("notification listener reconnected to channel %s", self.channel)
                        self._wake_all()
                    self.listening.set()
                    delay = 0.5
                    while not self.stopping.is_set():
                        for note in conn.notifies(timeout=PING_SECONDS):
                            self._dispatch(note.payload)
                            if self.stopping.is_set():
                                break
                        conn.execute("SELECT 1")  # a silently dropped connection shows here
            except Exception as exc:
                self.listening.clear()
                if self.stopping.is_set():
                    break
                log.warning("notification listener lost its connection (%s: %s); reconnecting in %.1fs",
                            exc.__class__.__name__, exc, delay)
                self.stopping.wait(delay)
                delay = min(delay * 2, RECONNECT_BACKOFF_MAX)
        self.listening.clear()

    def _interrupt(self) -> None:
        # notifies() returns at its timeout at the latest; stop() waits for that bounded join.
        # Waking it sooner needs a notification on its own channel.
        if self.channel:
            with contextlib.suppress(Exception):
                import psycopg

                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute("SELECT pg_notify(%s, 'stop')", (self.channel,))


class SocketListener(Listener):
    """A UNIX datagram socket beside the SQLite file; writers of this machine send to it."""

    def __init__(self, directory: str) -> None:
        super().__init__()
        self.path = os.path.join(directory, f"{os.getpid()}-{uuid.uuid4().hex[:8]}.sock")
        self.sock: socket.socket | None = None

    def start(self, wait_seconds: float = 10.0) -> Listener:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        for attempt in range(3):  # the last listener of another process may remove the directory meanwhile
            Path(self.path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                self.sock.bind(self.path)
                break
            except FileNotFoundError:
                if attempt == 2:
                    self.sock.close()
                    raise
        self.connects = 1
        self.listening.set()
        return super().start(wait_seconds)

    def _run(self) -> None:
        assert self.sock is not None
        try:
            while not self.stopping.is_set():
                try:
                    payload = self.sock.recv(256)
                except OSError:
                    break
                if not self.stopping.is_set():
                    self._dispatch(payload.decode(errors="replace"))
        finally:
            self.listening.clear()

    def _interrupt(self) -> None:
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as poke:
            poke.sendto(b"stop", self.path)

    def _close(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(self.path))  # only when it was the last one
        if self.sock is not None:
            self.sock.close()


def create_listener(engine: Engine, enabled: bool = True) -> Listener | None:
    """The listener that fits the database, started; None when push is off or impossible here."""
    if not enabled:
        return None
    listener: Listener
    if engine.dialect.name == "postgresql":
        listener = PostgresListener(engine.url)
    else:
        directory = socket_dir(engine)
        if directory is None or not hasattr(socket, "AF_UNIX"):
            return None
        listener = SocketListener(directory)
    try:
        return listener.start()
    except OSError as exc:  # e.g. a socket path too long for AF_UNIX: poll instead
        log.warning("push notifications unavailable (%s); polling instead", exc)
        return None


def is_live(listener: Listener | None) -> bool:
    return listener is not None and listener.live


def describe(listener: Listener | None) -> dict[str, Any]:
    """For /health and logs."""
    if listener is None:
        return {"push": "off"}
    return {"push": "live" if listener.live else "reconnecting", "connects": listener.connects}
