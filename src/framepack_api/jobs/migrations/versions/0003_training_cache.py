"""OpenAI-dialect video rows and the training-video cache

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "openai_videos",
        sa.Column("job_id", sa.String(36), primary_key=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("seconds", sa.String(16), nullable=False),
        sa.Column("size", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_openai_videos_created", "openai_videos", ["created_at", "job_id"])
    op.create_table(
        "training_videos",
        sa.Column("run_id", sa.String(128), primary_key=True),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("drill_text", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float),
    )


def downgrade() -> None:
    op.drop_table("training_videos")
    op.drop_index("ix_openai_videos_created", table_name="openai_videos")
    op.drop_table("openai_videos")
