"""PostgreSQL's triggers for jobs/rank.py: counts spread over shard rows, blocks moved at commit.

Concurrent submits all land in the tail block. One counter row per block would be a row lock held
by every submit until its commit (its WAL flush): submits would commit one at a time. So a block's
count is the sum of up to SHARDS rows, ``shard`` = the backend's pid modulo SHARDS, each written
with an upsert: concurrent transactions on different connections touch different rows.

A change to the pending set takes the per-schema advisory lock in SHARED mode (many writers at
once) and holds it to commit. Blocks are split or merged only under the same lock in EXCLUSIVE
mode, so while no other writer is in flight: then every count is committed and agrees with the
rows. That happens at commit, in a deferred constraint trigger, when the block just written is out
of bounds and ``pg_try_advisory_xact_lock`` finds no other writer (never waiting: a transaction
that holds the shared lock and waited for the exclusive one could deadlock with another doing the
same). Under a sustained stream of concurrent submits a block may so grow past its bound until a
commit finds a quiet moment; ``queue_rank_rebalance()`` (rank.rebalance) does it on demand.
Positions are exact at all times either way; only their cost depends on block sizes.
"""

from __future__ import annotations

SHARDS = 16
LOCK_CLASS = 7734009  # pg_advisory_*lock(class, hashtext(schema)); 7734001 is the migration lock
_COLS = "lo_key, lo_created, lo_id"
_DESC = "lo_key DESC, lo_created DESC, lo_id DESC"


def _block_of(row: str) -> str:
    return (f"SELECT {_COLS} INTO b FROM queue_buckets WHERE ({_COLS}) <= ({row}.claim_key, {row}.created_at, "
            f"{row}.id) ORDER BY {_DESC} LIMIT 1;")


def _bump(delta: int) -> str:
    return (f"INSERT INTO queue_buckets ({_COLS}, shard, pending) VALUES (b.lo_key, b.lo_created, b.lo_id, "
            f"mod(pg_backend_pid(), {SHARDS}), {delta}) ON CONFLICT ({_COLS}, shard) "
            f"DO UPDATE SET pending = queue_buckets.pending + {delta};")


def out_of_bounds(size: int) -> str:
    """HAVING condition over one block's rows: too big, or too small and not the sentinel."""
    return f"sum(pending) > {2 * size} OR (sum(pending) < {size // 2} AND lo_key > '-Infinity'::float8)"


def ddl(size: int) -> list[str]:
    lock_key = f"{LOCK_CLASS}, hashtext(current_schema())"
    move = f"""CREATE FUNCTION jobs_rank() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  b record;
BEGIN
  PERFORM pg_advisory_xact_lock_shared({lock_key});
  IF TG_OP <> 'INSERT' AND OLD.status = 'pending' THEN
    {_block_of('OLD')}
    {_bump(-1)}
  END IF;
  IF TG_OP <> 'DELETE' AND NEW.status = 'pending' THEN
    {_block_of('NEW')}
    {_bump(1)}
  END IF;
  RETURN NULL;
END $$"""
    rebalance_all = f"""CREATE FUNCTION queue_rank_rebalance() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  b record;
  m record;
  n bigint;
  fixed integer := 0;
BEGIN
  -- The caller holds the exclusive lock. One block at a time, until none is out of bounds: a merge
  -- can push the block before it over.
  LOOP
    SELECT {_COLS}, sum(pending) AS total INTO b FROM queue_buckets GROUP BY {_COLS}
     HAVING {out_of_bounds(size)} ORDER BY {_COLS} LIMIT 1;
    EXIT WHEN NOT FOUND;
    fixed := fixed + 1;
    n := b.total;
    DELETE FROM queue_buckets WHERE ({_COLS}) = (b.lo_key, b.lo_created, b.lo_id);
    IF n < {size // 2} THEN
      INSERT INTO queue_buckets ({_COLS}, shard, pending)
      SELECT {_COLS}, 0, n FROM queue_buckets WHERE ({_COLS}) < (b.lo_key, b.lo_created, b.lo_id)
       ORDER BY {_DESC} LIMIT 1
      ON CONFLICT ({_COLS}, shard) DO UPDATE SET pending = queue_buckets.pending + n;
      CONTINUE;
    END IF;
    WHILE n > {2 * size} LOOP
      SELECT claim_key, created_at, id INTO m FROM jobs
       WHERE status = 'pending' AND (claim_key, created_at, id) >= (b.lo_key, b.lo_created, b.lo_id)
       ORDER BY claim_key, created_at, id LIMIT 1 OFFSET {size};
      INSERT INTO queue_buckets ({_COLS}, shard, pending) VALUES (b.lo_key, b.lo_created, b.lo_id, 0, {size});
      SELECT m.claim_key AS lo_key, m.created_at AS lo_created, m.id AS lo_id INTO b;
      n := n - {size};
    END LOOP;
    INSERT INTO queue_buckets ({_COLS}, shard, pending) VALUES (b.lo_key, b.lo_created, b.lo_id, 0, n);
  END LOOP;
  RETURN fixed;
END $$"""
    at_commit = f"""CREATE FUNCTION queue_buckets_rebalance() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  n bigint;
BEGIN
  SELECT sum(pending) INTO n FROM queue_buckets
   WHERE ({_COLS}) = (NEW.lo_key, NEW.lo_created, NEW.lo_id);
  IF n IS NULL OR (n <= {2 * size} AND (n >= {size // 2} OR NEW.lo_key = '-Infinity'::float8)) THEN
    RETURN NULL;
  END IF;
  IF pg_try_advisory_xact_lock({lock_key}) THEN
    PERFORM queue_rank_rebalance();
  END IF;
  RETURN NULL;
END $$"""
    keys_changed = ("OLD.status IS DISTINCT FROM NEW.status OR OLD.claim_key IS DISTINCT FROM NEW.claim_key "
                    "OR OLD.created_at IS DISTINCT FROM NEW.created_at OR OLD.id IS DISTINCT FROM NEW.id")
    return [
        move, rebalance_all, at_commit,
        "CREATE TRIGGER jobs_rank_insert AFTER INSERT ON jobs FOR EACH ROW WHEN (NEW.status = 'pending') "
        "EXECUTE FUNCTION jobs_rank()",
        "CREATE TRIGGER jobs_rank_delete AFTER DELETE ON jobs FOR EACH ROW WHEN (OLD.status = 'pending') "
        "EXECUTE FUNCTION jobs_rank()",
        "CREATE TRIGGER jobs_rank_update AFTER UPDATE OF status, claim_key, created_at, id ON jobs FOR EACH ROW "
        f"WHEN ((OLD.status = 'pending' OR NEW.status = 'pending') AND ({keys_changed})) "
        "EXECUTE FUNCTION jobs_rank()",
        # Deferred: at commit, rows and this transaction's counts agree. Checked when a shard row
        # passes a multiple of size/8, not at every change: a block
        # may so pass its bound by up to SHARDS × size/8 before it is looked at, and a bulk INSERT
        # does not queue one check per row. Its own writes queue more events; those find their
        # blocks in bounds and return.
        "CREATE CONSTRAINT TRIGGER queue_buckets_rebalance AFTER INSERT OR UPDATE ON queue_buckets "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
        f"WHEN (mod(NEW.pending, {max(1, size // 8)}) = 0) "
        "EXECUTE FUNCTION queue_buckets_rebalance()",
    ]


DROP = [
    "DROP TRIGGER IF EXISTS jobs_rank_insert ON jobs",
    "DROP TRIGGER IF EXISTS jobs_rank_delete ON jobs",
    "DROP TRIGGER IF EXISTS jobs_rank_update ON jobs",
    "DROP TRIGGER IF EXISTS queue_buckets_rebalance ON queue_buckets",
    "DROP FUNCTION IF EXISTS jobs_rank()",
    "DROP FUNCTION IF EXISTS queue_buckets_rebalance()",
    "DROP FUNCTION IF EXISTS queue_rank_rebalance()",
]
