"""Migration 0009 counts the pending jobs already queued into blocks, and goes back down cleanly."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command

from framepack_api.jobs import rank
from framepack_api.jobs.db import alembic_config, create_engine
from framepack_api.jobs.store import JobStore, NewJob, count_ahead
from framepack_api.params import JobType


def _insert(conn: sa.Connection, n: int, status: str) -> None:
    mark = "%s" if conn.dialect.name == "postgresql" else "?"
    conn.exec_driver_sql(
        "INSERT INTO jobs (id, type, status, priority, created_at, claim_key, params, inputs, updated_at) "
        f"VALUES ({mark}, 'video', {mark}, 0, {mark}, {mark}, '{{}}', '{{}}', 1.0)",
        [(f"{status}-{i:05d}", status, 10.0 + i, float((i * 7919) % n)) for i in range(n)])


def _has_triggers(conn: sa.Connection) -> bool:
    if conn.dialect.name == "postgresql":
        sql = "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'jobs_rank%%' AND tgrelid = 'jobs'::regclass"
    else:
        sql = "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'jobs_rank%'"
    return bool(conn.exec_driver_sql(sql).scalar_one())


def test_backfills_blocks_and_downgrades(db_url: str) -> None:
    engine = create_engine(db_url)
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    queued = 2 * rank.SIZE + 88  # three blocks: SIZE, SIZE and the rest
    try:
        with engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0008")
            _insert(conn, queued, "pending")
            _insert(conn, 50, "completed")
            conn.commit()
            command.upgrade(cfg, "0009")
            conn.commit()
            counts = [n for (n,) in conn.exec_driver_sql(
                "SELECT pending FROM queue_buckets ORDER BY lo_key, lo_created, lo_id")]
            assert counts == [rank.SIZE, rank.SIZE, 88]
            assert _has_triggers(conn)
            order = [tuple(r) for r in conn.exec_driver_sql(
                "SELECT claim_key, created_at, id FROM jobs WHERE status = 'pending' "
                "ORDER BY claim_key, created_at, id")]
            for place in (0, 1, rank.SIZE - 1, rank.SIZE, 2 * rank.SIZE + 5, queued - 1):
                assert count_ahead(conn, *order[place]) == place
            conn.commit()

            store = JobStore(engine, clock=lambda: 99999.0, aging_seconds=1.0)  # key 99999: last
            job, _ = store.submit(NewJob(JobType.video, {}, {}))
            assert store.position(job) == queued + 1  # the trigger counted it

            command.downgrade(cfg, "0008")
            conn.commit()
            assert "queue_buckets" not in sa.inspect(conn).get_table_names()
            assert not _has_triggers(conn)
            conn.commit()
            store.submit(NewJob(JobType.video, {}, {}))  # jobs still take writes without the triggers
            command.upgrade(cfg, "head")
            conn.commit()
            assert conn.exec_driver_sql("SELECT sum(pending) FROM queue_buckets").scalar_one() == queued + 2
    finally:
        engine.dispose()
