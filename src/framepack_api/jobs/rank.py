"""Queue positions in O(sqrt n): pending counts per block of the claim order, kept by triggers.

The claim order is the key ``(claim_key, created_at, id)`` (jobs/scheduling.py), fixed at submit.
``queue_buckets`` cuts that order into blocks: a block starts at its ``lo`` key (the first block at
a sentinel below every key) and runs to the next block's ``lo``; its ``pending`` is the number of
pending jobs whose key falls in it. Then

    jobs ahead of K = sum(pending of the blocks before K's block)
                      + pending jobs from K's block's lo up to K (an index range on ix_jobs_claim_key)

Blocks are cut by the data, not by the key's value: a block that passes 2×size pending jobs is split
at its size-th job, and one that falls under size/2 is merged into the block before it. So whatever
the keys look like (a burst of submits in one second, aging 0 where the key is just the priority),
a 100k queue has ~100k/size blocks and the range inside one block is at most ~2.5×size rows:
about 2·sqrt(n) entries read for size ≈ sqrt(n) (size 256: ~400 + ≤640 at 100k, against 100k).

Triggers on ``jobs`` keep the counts in the transaction of every change, on every code path
(submit, claim, cancel, release, reaper, retries, delete, retention, a hand-written UPDATE):

- SQLite runs row triggers at once, row by row, and one writer at a time: a split counts the rows
  right after the change that made the block too big.
- PostgreSQL runs AFTER ROW triggers at the end of the statement, so a multi-row UPDATE has changed
  rows whose counts are not yet applied when the first trigger runs; splitting then would count
  them twice. Its row triggers only move counts (spread over shard rows so that concurrent
  submits do not queue on one row); splits and merges run at commit, when no other writer is in
  flight (jobs/rank_pg.py).

Correctness never depends on block sizes (only the speed does): a position is right even inside a
transaction that has made a block too big and not yet committed.

Alembic's SQLite batch mode recreates a table to alter it and so drops its triggers: a later
migration that batch-alters ``jobs`` must call ``install`` again.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from framepack_api.jobs import rank_pg
from framepack_api.jobs.tables import jobs, queue_buckets

SIZE = 256  # a block is split above 2×SIZE pending jobs and merged below SIZE/2
_COLS = "lo_key, lo_created, lo_id"
_ORDER_DESC = "lo_key DESC, lo_created DESC, lo_id DESC"
_PENDING = "'pending'"


def _block_of(row: str) -> str:
    """The lo of the block holding ``row``'s key (row is NEW or OLD in a trigger): a row value."""
    return (f"(SELECT {_COLS} FROM queue_buckets WHERE ({_COLS}) <= ({row}.claim_key, {row}.created_at, {row}.id)"
            f" ORDER BY {_ORDER_DESC} LIMIT 1)")


def _sqlite_ddl(size: int) -> list[str]:
    def bump(row: str, delta: str, when: str = "") -> str:
        return f"UPDATE queue_buckets SET pending = pending {delta} WHERE {when}({_COLS}) = {_block_of(row)};"

    keys_changed = ("OLD.status IS NOT NEW.status OR OLD.claim_key IS NOT NEW.claim_key "
                    "OR OLD.created_at IS NOT NEW.created_at OR OLD.id IS NOT NEW.id")
    return [
        f"CREATE TRIGGER jobs_rank_insert AFTER INSERT ON jobs WHEN NEW.status = {_PENDING} "
        f"BEGIN {bump('NEW', '+ 1')} END",
        f"CREATE TRIGGER jobs_rank_delete AFTER DELETE ON jobs WHEN OLD.status = {_PENDING} "
        f"BEGIN {bump('OLD', '- 1')} END",
        f"CREATE TRIGGER jobs_rank_update AFTER UPDATE OF status, claim_key, created_at, id ON jobs "
        f"WHEN (OLD.status = {_PENDING} OR NEW.status = {_PENDING}) AND ({keys_changed}) BEGIN "
        f"{bump('OLD', '- 1', f'OLD.status = {_PENDING} AND ')} "
        f"{bump('NEW', '+ 1', f'NEW.status = {_PENDING} AND ')} END",
        # Split: the size-th pending job of the block starts a new block holding the rest.
        f"CREATE TRIGGER queue_buckets_split AFTER UPDATE OF pending ON queue_buckets "
        f"WHEN NEW.pending > {2 * size} BEGIN "
        f"INSERT INTO queue_buckets ({_COLS}, pending) SELECT claim_key, created_at, id, NEW.pending - {size} "
        f"FROM jobs WHERE status = {_PENDING} AND (claim_key, created_at, id) >= (NEW.lo_key, NEW.lo_created, "
        f"NEW.lo_id) ORDER BY claim_key, created_at, id LIMIT 1 OFFSET {size}; "
        f"UPDATE queue_buckets SET pending = {size} WHERE ({_COLS}) = (NEW.lo_key, NEW.lo_created, NEW.lo_id); END",
        # Merge: delete first, so that a split of the block before (its count may pass 2×size) can
        # never cut at this block's lo while it still exists.
        f"CREATE TRIGGER queue_buckets_merge AFTER UPDATE OF pending ON queue_buckets "
        f"WHEN NEW.pending < {size // 2} AND NEW.lo_key > -1e999 BEGIN "
        f"DELETE FROM queue_buckets WHERE ({_COLS}) = (NEW.lo_key, NEW.lo_created, NEW.lo_id); "
        f"UPDATE queue_buckets SET pending = pending + NEW.pending WHERE ({_COLS}) = (SELECT {_COLS} FROM "
        f"queue_buckets WHERE ({_COLS}) < (NEW.lo_key, NEW.lo_created, NEW.lo_id) ORDER BY {_ORDER_DESC} "
        f"LIMIT 1); END",
    ]


_TRIGGERS = ("jobs_rank_insert", "jobs_rank_delete", "jobs_rank_update")


def uninstall(conn: sa.Connection) -> None:
    """Drop the triggers (and PostgreSQL's functions); the table stays."""
    if conn.dialect.name == "postgresql":
        for ddl in rank_pg.DROP:
            conn.exec_driver_sql(ddl)
        return
    for name in (*_TRIGGERS, "queue_buckets_split", "queue_buckets_merge"):
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")


def install(conn: sa.Connection, size: int = SIZE) -> None:
    """(Re)create the triggers with blocks of ``size`` and recount every block from the rows.

    On PostgreSQL, CREATE TRIGGER locks jobs against writes until this transaction commits, so no
    change slips between the recount and the triggers."""
    uninstall(conn)
    for ddl in rank_pg.ddl(size) if conn.dialect.name == "postgresql" else _sqlite_ddl(size):
        conn.exec_driver_sql(ddl)
    conn.execute(queue_buckets.delete())
    keys = conn.execute(sa.select(jobs.c.claim_key, jobs.c.created_at, jobs.c.id)
                        .where(jobs.c.status == "pending").order_by(jobs.c.claim_key, jobs.c.created_at, jobs.c.id)
                        ).all()
    starts = [(float("-inf"), float("-inf"), "")] + [tuple(k) for k in keys[size::size]]
    rows = [{"lo_key": s[0], "lo_created": s[1], "lo_id": s[2], "shard": 0, "pending": min(size, len(keys) - i * size)}
            for i, s in enumerate(starts)]
    conn.execute(queue_buckets.insert(), rows)


def rebalance(conn: sa.Connection, size: int = SIZE) -> int:
    """PostgreSQL: split and merge every block out of bounds now (it waits for the writers in flight,
    and holds new ones back meanwhile); returns how many it fixed. SQLite keeps them in bounds always.

    Cheap when nothing is to do: a look at the block totals without the lock first."""
    if conn.dialect.name != "postgresql":
        return 0
    due = conn.exec_driver_sql(
        f"SELECT 1 FROM queue_buckets GROUP BY {_COLS} HAVING {rank_pg.out_of_bounds(size)} LIMIT 1").first()
    if due is None:
        return 0
    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({rank_pg.LOCK_CLASS}, hashtext(current_schema()))")
    return int(conn.exec_driver_sql("SELECT queue_rank_rebalance()").scalar_one())


def ahead(key: tuple[Any, Any, Any]) -> Any:
    """SQL expression: pending jobs before ``key`` = (claim_key, created_at, id) in claim order.

    ``key`` may be columns of an outer ``jobs`` row (a correlated subquery) or plain values."""
    target = sa.tuple_(*key)
    # The block's lo as three scalar subqueries, not one row subquery: PostgreSQL can bound an index
    # scan by ROW(a, b, c) >= ROW($1, $2, $3) but only filters by ROW(a, b, c) >= (SELECT x, y, z),
    # which would read every pending job before the block. Aliases: one table under both the block
    # lookup and the sum would be correlated away by SQLAlchemy.
    mine, earlier = queue_buckets.alias("block"), queue_buckets.alias("earlier")
    lookup = (sa.select(mine).where(sa.tuple_(mine.c.lo_key, mine.c.lo_created, mine.c.lo_id) <= target)
              .order_by(mine.c.lo_key.desc(), mine.c.lo_created.desc(), mine.c.lo_id.desc())
              .limit(1).correlate_except(mine))  # the outer jobs row, two levels up
    block = sa.tuple_(*(lookup.with_only_columns(c).scalar_subquery()
                        for c in (mine.c.lo_key, mine.c.lo_created, mine.c.lo_id)))
    before = (sa.select(sa.func.coalesce(sa.func.sum(earlier.c.pending), 0))
              .where(sa.tuple_(earlier.c.lo_key, earlier.c.lo_created, earlier.c.lo_id) < block).scalar_subquery())
    other = jobs.alias("ahead")
    order = sa.tuple_(other.c.claim_key, other.c.created_at, other.c.id)
    inside = (sa.select(sa.func.count()).select_from(other)
              .where(other.c.status == "pending", order >= block, order < target).scalar_subquery())
    return before + inside
