"""/metrics counters and histograms are running totals: deleting jobs never lowers them."""

from __future__ import annotations

import time
from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from framepack_api.api.app import create_app
from framepack_api.api.deps import AppState
from framepack_api.jobs.retention import Policy, Retention
from framepack_api.jobs.store import JobStore, NewJob
from framepack_api.jobs.tables import jobs
from framepack_api.params import JobType
from framepack_api.settings import Settings


def _scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def _run(store: JobStore, error: str | None = None) -> str:
    job, _ = store.submit(NewJob(JobType.video, {"prompt": "p"}, {}))
    claimed = store.claim("w1")
    assert claimed is not None and claimed.id == job.id
    assert store.fail(claimed, error) if error else store.complete(claimed, {"info": {}}, 1)
    return job.id


def _rows(store: JobStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar_one())


def test_counters_survive_delete_and_retention(db_url: str, tmp_path: Path) -> None:
    settings = Settings(model="tiny", data_dir=tmp_path, workers=0, database_url=db_url, _env_file=None)  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as client:
        state: AppState = client.app.state.framepack  # type: ignore[attr-defined]
        store = state.store
        done = [_run(store), _run(store)]
        _run(store, "ValueError: bad frame")
        _run(store, "worker lost: no attempts left")
        before = _scrape(client)
        assert before[("framepack_job_duration_seconds_count", ())] == 2
        assert before[("framepack_job_queue_seconds_count", ())] == 4
        assert before[("framepack_job_duration_seconds_bucket", (("le", "+Inf"),))] == 2
        assert before[("framepack_job_failures_total", (("kind", "ValueError"),))] == 1
        assert before[("framepack_job_failures_total", (("kind", "worker_lost"),))] == 1
        assert before[("framepack_jobs", (("status", "completed"),))] == 2

        store.delete(done[0])
        retention = Retention(state.engine, state.storage, Policy(jobs_seconds=1.0), holder="test",
                              clock=lambda: time.time() + 3600)
        assert retention.run_round().ran
        assert _rows(store) == 0  # every finished job is gone from the database

        after = _scrape(client)
        counters = {k: v for k, v in before.items()
                    if k[0].startswith(("framepack_job_duration_seconds", "framepack_job_queue_seconds",
                                        "framepack_job_failures"))}
        assert len(counters) > 20
        assert {k: after[k] for k in counters} == counters
        assert after[("framepack_jobs", (("status", "completed"),))] == 0  # gauges follow the rows
        assert after[("framepack_jobs", (("status", "failed"),))] == 0
