"""Engine per settings, SQLite tuned for a queue, and Alembic migrations applied on start."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from filelock import FileLock
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from framepack_api.jobs import notify

_IMMEDIATE = "framepack_immediate"


def create_engine(url: str) -> Engine:
    """One engine per database URL. SQLite gets WAL and explicit transaction control."""
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        _tune_sqlite(engine)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _tune_sqlite(engine: Engine) -> None:
    # pysqlite's own BEGIN handling is bypassed so that writes can take the write lock up front
    # (BEGIN IMMEDIATE): a claim then never fails half-way with "database is locked".
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextlib.contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """A short write transaction; on SQLite it holds the write lock from its first statement.
    What it announced (notify.announce) is sent once it has committed."""
    with engine.connect().execution_options(**{_IMMEDIATE: True}) as conn:
        try:
            with conn.begin():
                yield conn
        except BaseException:
            notify.forget_pending(conn)
            raise
        notify.flush_after_commit(conn)


@contextlib.contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn, conn.begin():
        yield conn


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "framepack_api.jobs:migrations")
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to head. Safe when several processes start at once."""
    with _migration_lock(engine):
        cfg = alembic_config(engine.url.render_as_string(hide_password=False))
        with engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT pg_advisory_lock(7734001)")
            try:
                yield
            finally:
                conn.exec_driver_sql("SELECT pg_advisory_unlock(7734001)")
                conn.commit()
        return
    db_path = engine.url.database
    if engine.dialect.name != "sqlite" or not db_path or db_path == ":memory:":
        yield
        return
    # filelock, not fcntl: the same lock on Windows, where FramePack's users mostly are
    with FileLock(f"{db_path}.migrate.lock"):
        yield


def ping(engine: Engine) -> bool:
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        return True
    except sa.exc.SQLAlchemyError:
        return False
