"""Migration 0007 gives existing rows the claim key submit would have stored, and seeds the totals."""

from __future__ import annotations

import pytest
from alembic import command

from framepack_api.jobs.db import alembic_config, create_engine
from framepack_api.jobs.scheduling import claim_key, scheduling_options
from framepack_api.params import JobType
from framepack_api.settings import Settings


def test_backfills_claim_keys_and_totals(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAMEPACK_API_AGING_SECONDS_PER_PRIORITY", "20")
    monkeypatch.setenv("FRAMEPACK_API_IMAGE_PRIORITY_BOOST", "7")
    engine = create_engine(db_url)
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    rows = [("v", "video", "pending", 2, 100.0, None, None, None), ("i", "image", "pending", 0, 50.0, None, None, None),
            ("c", "video", "completed", 0, 10.0, 12.0, 42.0, None),
            ("f", "video", "failed", 0, 10.0, 11.0, 13.0, "RuntimeError: x")]
    try:
        with engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0006")
            for row in rows:
                conn.exec_driver_sql(
                    "INSERT INTO jobs (id, type, status, priority, created_at, started_at, finished_at, error, "
                    "params, inputs, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, '{}', '{}', 1.0)"
                    if engine.dialect.name == "postgresql" else
                    "INSERT INTO jobs (id, type, status, priority, created_at, started_at, finished_at, error, "
                    "params, inputs, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, '{}', '{}', 1.0)", row)
            conn.commit()
            command.upgrade(cfg, "0007")
            keys = dict(conn.exec_driver_sql("SELECT id, claim_key FROM jobs").all())
            options = scheduling_options(Settings(_env_file=None))  # type: ignore[call-arg]
            assert keys["v"] == claim_key(2, JobType.video, 100.0, **options) == 60.0
            assert keys["i"] == claim_key(0, JobType.image, 50.0, **options) == 50.0 - 7 * 20
            totals = {(n, lbl): v for n, lbl, v in conn.exec_driver_sql(
                "SELECT name, label, value FROM metric_totals").all()}
            assert totals[("job_duration_seconds", "count")] == 1
            assert totals[("job_duration_seconds", "sum")] == 30.0
            assert totals[("job_duration_seconds", "30")] == 1 and ("job_duration_seconds", "15") not in totals
            assert totals[("job_queue_seconds", "count")] == 2
            assert totals[("job_failures", "RuntimeError")] == 1
            conn.commit()
            command.downgrade(cfg, "0006")
            assert sorted(r[0] for r in conn.exec_driver_sql("SELECT id FROM jobs").all()) == ["c", "f", "i", "v"]
            conn.commit()
    finally:
        engine.dispose()
