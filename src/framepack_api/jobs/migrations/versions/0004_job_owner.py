"""Tenants: the owner of each job, idempotency keys per owner, training runs per owner

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Jobs from before tenants belong to "" (auth off): only admin keys see them once auth is on.
    op.add_column("jobs", sa.Column("owner", sa.String(64), nullable=False, server_default=""))
    op.drop_index("ix_jobs_idempotency_key", table_name="jobs")
    op.create_index("ix_jobs_owner_idempotency_key", "jobs", ["owner", "idempotency_key"], unique=True)
    op.create_index("ix_jobs_owner_created", "jobs", ["owner", "created_at"])
    # A new primary key (owner, run_id): copying into a new table works the same on SQLite and PostgreSQL.
    op.create_table(
        "training_videos_v4",
        sa.Column("owner", sa.String(64), primary_key=True, server_default=""),
        sa.Column("run_id", sa.String(128), primary_key=True),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("drill_text", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float),
    )
    op.execute("INSERT INTO training_videos_v4 (owner, run_id, job_id, drill_text, created_at, expires_at) "
               "SELECT '', run_id, job_id, drill_text, created_at, expires_at FROM training_videos")
    op.drop_table("training_videos")
    op.rename_table("training_videos_v4", "training_videos")


def downgrade() -> None:
    op.create_table(
        "training_videos_v3",
        sa.Column("run_id", sa.String(128), primary_key=True),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("drill_text", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float),
    )
    op.execute("INSERT INTO training_videos_v3 (run_id, job_id, drill_text, created_at, expires_at) "
               "SELECT run_id, job_id, drill_text, created_at, expires_at FROM training_videos WHERE owner = ''")
    op.drop_table("training_videos")
    op.rename_table("training_videos_v3", "training_videos")
    op.drop_index("ix_jobs_owner_created", table_name="jobs")
    op.drop_index("ix_jobs_owner_idempotency_key", table_name="jobs")
    # Keys reused by different owners cannot survive a return to one global namespace.
    op.execute("UPDATE jobs SET idempotency_key = NULL WHERE owner <> ''")
    op.create_index("ix_jobs_idempotency_key", "jobs", ["idempotency_key"], unique=True)
    op.drop_column("jobs", "owner")
