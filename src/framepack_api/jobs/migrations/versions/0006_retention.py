"""Retention: when a finished job's files were removed, and the lease row of the retention round

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("files_expired_at", sa.Float))
    op.create_index("ix_jobs_finished", "jobs", ["status", "finished_at"])
    op.create_index("ix_job_events_created", "job_events", ["created_at"])
    leases = op.create_table(
        "maintenance_leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    # Seeded here so that taking the lease is always one conditional UPDATE, never an INSERT race.
    op.bulk_insert(leases, [{"name": "retention", "holder": "", "expires_at": 0.0}])


def downgrade() -> None:
    op.drop_table("maintenance_leases")
    op.drop_index("ix_job_events_created", table_name="job_events")
    op.drop_index("ix_jobs_finished", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("files_expired_at")
