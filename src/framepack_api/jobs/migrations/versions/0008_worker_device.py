"""Each worker's device: where its model runs and the CUDA_VISIBLE_DEVICES it was pinned with

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: rows of workers that started before the upgrade, and of remote-only workers.
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("device", sa.String(255)))
        batch.add_column(sa.Column("visible_devices", sa.String(255)))


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("visible_devices")
        batch.drop_column("device")
