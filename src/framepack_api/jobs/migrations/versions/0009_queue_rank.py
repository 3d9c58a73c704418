"""Queue positions in O(sqrt n): pending counts per block of the claim order, kept by triggers

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

from framepack_api.jobs import rank

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "queue_buckets",
        sa.Column("lo_key", sa.Float, primary_key=True),
        sa.Column("lo_created", sa.Float, primary_key=True),
        sa.Column("lo_id", sa.String(36), primary_key=True),
    # PostgreSQL: a block's count is the sum of its shard rows (jobs/rank_pg.py); SQLite: always 0.
    sa.Column("shard", sa.Integer, primary_key=True, server_default="0"),
        sa.Column("pending", sa.Integer, nullable=False),
        sqlite_with_rowid=False,
    )
    # Triggers, then the count of the pending jobs already there (see rank.install).
    rank.install(op.get_bind(), rank.SIZE)


def downgrade() -> None:
    rank.uninstall(op.get_bind())
    op.drop_table("queue_buckets")
