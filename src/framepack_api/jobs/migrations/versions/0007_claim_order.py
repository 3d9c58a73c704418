"""Claim order stored at submit (indexed), and running totals for /metrics

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from framepack_api.jobs.metric_totals import DURATION, FAILURES, HISTOGRAMS, QUEUE, failure_kind
from framepack_api.jobs.scheduling import claim_key, scheduling_options
from framepack_api.settings import Settings

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

jobs = sa.table("jobs", sa.column("id", sa.String), sa.column("type", sa.String), sa.column("status", sa.String),
                sa.column("priority", sa.Integer), sa.column("created_at", sa.Float),
                sa.column("started_at", sa.Float), sa.column("finished_at", sa.Float),
                sa.column("error", sa.Text), sa.column("claim_key", sa.Float))


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("claim_key", sa.Float, nullable=False, server_default="0"))
    # Existing rows get the key the settings of the process running the upgrade give them: the
    # same expression that submit evaluates in Python, here in one UPDATE.
    options = scheduling_options(Settings())
    op.execute(jobs.update().values(claim_key=claim_key(jobs.c.priority, jobs.c.type, jobs.c.created_at, **options)))
    op.drop_index("ix_jobs_claim_order", table_name="jobs")
    op.create_index("ix_jobs_claim_key", "jobs", ["status", "claim_key", "created_at", "id"])
    totals = op.create_table(
        "metric_totals",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("label", sa.String(64), primary_key=True),
        sa.Column("value", sa.Float, nullable=False),
    )
    op.bulk_insert(totals, _totals_from_rows())


def _totals_from_rows() -> list[dict[str, object]]:
    """The totals so far, from the rows still there: one last recount, so no counter restarts at 0."""
    conn = op.get_bind()
    values: dict[tuple[str, str], float] = {}

    def add(name: str, label: str, amount: float) -> None:
        values[(name, label)] = values.get((name, label), 0.0) + amount

    def observe(name: str, seconds: float) -> None:
        for bound in HISTOGRAMS[name]:
            if seconds <= bound:
                add(name, str(bound), 1)
        add(name, "count", 1)
        add(name, "sum", seconds)

    for row in conn.execute(sa.select(jobs.c.status, jobs.c.created_at, jobs.c.started_at, jobs.c.finished_at,
                                      jobs.c.error).where(jobs.c.started_at.is_not(None)
                                                          | (jobs.c.status == "failed"))):
        if row.started_at is not None:
            observe(QUEUE, float(row.started_at) - float(row.created_at))
        if row.status == "completed" and row.finished_at is not None and row.started_at is not None:
            observe(DURATION, float(row.finished_at) - float(row.started_at))
        if row.status == "failed":
            add(FAILURES, failure_kind(row.error), 1)
    return [{"name": n, "label": label, "value": v} for (n, label), v in values.items()]


def downgrade() -> None:
    op.drop_table("metric_totals")
    op.drop_index("ix_jobs_claim_key", table_name="jobs")
    op.create_index("ix_jobs_claim_order", "jobs", ["status", "priority", "created_at"])
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("claim_key")
