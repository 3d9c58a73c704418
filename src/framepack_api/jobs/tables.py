"""SQLAlchemy Core tables. The schema itself is owned by the Alembic migrations; keep both in step."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("inputs", sa.JSON, nullable=False),  # name -> path relative to the storage root
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", sa.Float, nullable=False),  # unix seconds; portable and sortable
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("worker_id", sa.String(128)),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False, server_default="3"),
    sa.Column("lease_expires_at", sa.Float),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("progress", sa.Float, nullable=False, server_default="0"),
    sa.Column("step", sa.Integer),
    sa.Column("total_steps", sa.Integer),
    sa.Column("section", sa.Integer),
    sa.Column("total_sections", sa.Integer),
    sa.Column("message", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("seed", sa.BigInteger),
    sa.Column("result", sa.JSON),  # name -> path relative to the storage root, plus info
    sa.Column("idempotency_key", sa.String(255)),
    sa.Column("request_hash", sa.String(64)),  # what the idempotency key was first used for
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("webhook_url", sa.Text),
    sa.Column("webhook_events", sa.JSON),  # None = terminal events only
    sa.Column("preview", sa.String(512)),  # newest latent preview, relative to the storage root
    sa.Column("files_expired_at", sa.Float),  # set when retention removed the job's files (0006)
    # The credential that created the job (a key id, never the key; "" while auth is off).
    sa.Column("owner", sa.String(64), nullable=False, server_default=""),
    # Times a worker died by a signal (OOM kill, segfault) while running this job; see worker_killed.
    sa.Column("signal_deaths", sa.Integer, nullable=False, server_default="0"),
    # Claim order, computed once at submit and never changed (jobs/scheduling.py, migration 0007):
    # claim takes the first pending row of ix_jobs_claim_key, position counts the rows before it.
    sa.Column("claim_key", sa.Float, nullable=False, server_default="0"),
    sa.Index("ix_jobs_claim_key", "status", "claim_key", "created_at", "id"),
    sa.Index("ix_jobs_lease", "status", "lease_expires_at"),
    # Idempotency keys are per credential: two tenants may pick the same key.
    sa.Index("ix_jobs_owner_idempotency_key", "owner", "idempotency_key", unique=True),
    sa.Index("ix_jobs_owner_created", "owner", "created_at"),
    sa.Index("ix_jobs_finished", "status", "finished_at"),
)

workers = sa.Table(
    "workers",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("hostname", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("preset", sa.String(64)),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("last_seen_at", sa.Float, nullable=False),
    sa.Column("current_job_id", sa.String(36)),
    sa.Column("state", sa.String(16), nullable=False),  # starting | idle | busy | stopped
    # e.g. "cuda:1 (GPU-5d5b…)" or "cpu" (gpus.worker_device_label), and CUDA_VISIBLE_DEVICES as set.
    sa.Column("device", sa.String(255)),
    sa.Column("visible_devices", sa.String(255)),
)

# Every change a client may want pushed (transitions, progress, previews) is appended here in the
# same transaction as the change itself; the id is the SSE event id, so resuming is `id > last`.
job_events = sa.Table(
    "job_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(36), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),  # status | progress | preview | completed | ...
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_job_events_job", "job_id", "id"),
    sa.Index("ix_job_events_created", "created_at"),
)

# The webhook outbox: written with the event, delivered by a separate loop, kept across restarts.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(36), nullable=False),
    sa.Column("event_id", sa.Integer, nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending | delivered | dead
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("delivered_at", sa.Float),
    sa.Index("ix_webhook_due", "status", "next_attempt_at"),
)

# -- issue 5: the OpenAI dialect's view of a job, and the training service's per-run cache --

# What an OpenAI-style client asked for and was promised (model, seconds, size as made), kept
# beside the job so that retrieve and list answer it; only jobs made through /v1/videos have a row.
openai_videos = sa.Table(
    "openai_videos",
    metadata,
    sa.Column("job_id", sa.String(36), primary_key=True),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("seconds", sa.String(16), nullable=False),
    sa.Column("size", sa.String(32), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_openai_videos_created", "created_at", "job_id"),
)

# Seed 004's video cache, one row per training run, in the database so that it survives restarts.
# Run ids are chosen by clients, so each credential (owner) has its own namespace of them.
training_videos = sa.Table(
    "training_videos",
    metadata,
    sa.Column("owner", sa.String(64), primary_key=True, server_default=""),
    sa.Column("run_id", sa.String(128), primary_key=True),
    sa.Column("job_id", sa.String(36), nullable=False),
    sa.Column("drill_text", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float),  # None: kept until DELETE /cache/{run_id}
)

# One row per periodic task that must run in one process at a time (retention): whoever moves
# expires_at forward with a conditional UPDATE holds it until then. Seeded by migration 0006.
maintenance_leases = sa.Table(
    "maintenance_leases",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(128), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)

# Running totals behind /metrics' counters and histograms (0007): bumped in the same transaction as
# the transition they count, never recomputed from jobs, so deleting jobs never lowers them.
metric_totals = sa.Table(
    "metric_totals",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("label", sa.String(64), primary_key=True),  # a bucket's bound, a kind, or count/sum
    sa.Column("value", sa.Float, nullable=False),
)

# Pending jobs per block of the claim order (0009): a block runs from its lo key (claim_key,
# created_at, id) to the next block's; kept by triggers on jobs, read for queue positions. See
# jobs/rank.py. WITHOUT ROWID on SQLite: the rows live in the key's own b-tree.
queue_buckets = sa.Table(
    "queue_buckets",
    metadata,
    sa.Column("lo_key", sa.Float, primary_key=True),
    sa.Column("lo_created", sa.Float, primary_key=True),
    sa.Column("lo_id", sa.String(36), primary_key=True),
    # PostgreSQL: a block's count is the sum of its shard rows (jobs/rank_pg.py); SQLite: always 0.
    sa.Column("shard", sa.Integer, primary_key=True, server_default="0"),
    sa.Column("pending", sa.Integer, nullable=False),
    sqlite_with_rowid=False,
)
