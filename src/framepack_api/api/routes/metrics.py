"""GET /metrics in Prometheus' text format, computed from the job store at scrape time.

Everything comes from the database, so every API process reports the same numbers and nothing
is lost when one restarts; histograms are cumulative over the jobs the database holds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from framepack_api.api.deps import AppState, StateDep
from framepack_api.jobs.db import read_tx
from framepack_api.jobs.eta import work_steps
from framepack_api.jobs.schema import JobStatus
from framepack_api.jobs.tables import jobs

router = APIRouter(tags=["service"])

DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600)
QUEUE_BUCKETS = (0.1, 0.5, 1, 5, 15, 30, 60, 300, 900, 3600)
RATE_WINDOW = 20


def _histogram(conn: Any, name: str, doc: str, start: Any, end: Any, where: Any,
               buckets: tuple[float, ...]) -> HistogramMetricFamily:
    seconds = end - start
    cols = [sa.func.sum(sa.case((seconds <= b, 1), else_=0)) for b in buckets]
    row = conn.execute(sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(seconds), 0.0), *cols)
                       .where(where)).one()
    count, total = int(row[0]), float(row[1])
    cumulative = [(str(b), int(v or 0)) for b, v in zip(buckets, row[2:], strict=True)]
    return HistogramMetricFamily(name, doc, buckets=[*cumulative, ("+Inf", count)], sum_value=total)


class StoreCollector(Collector):
    def __init__(self, state: AppState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        store, settings = self.state.store, self.state.settings
        counts = store.counts()
        by_status = GaugeMetricFamily("framepack_jobs", "Jobs in the database by status", labels=["status"])
        for status in JobStatus:
            by_status.add_metric([status.value], counts.get(status.value, 0))
        yield by_status
        yield GaugeMetricFamily("framepack_queue_depth", "Jobs waiting to run",
                                value=counts.get(JobStatus.pending.value, 0))
        yield GaugeMetricFamily("framepack_workers_alive", "Workers seen within one lease",
                                value=len(store.live_workers(settings.lease_seconds)))
        with read_tx(store.engine) as conn:
            yield _histogram(conn, "framepack_job_duration_seconds", "Run time of completed jobs",
                             jobs.c.started_at, jobs.c.finished_at,
                             jobs.c.status == JobStatus.completed.value, DURATION_BUCKETS)
            yield _histogram(conn, "framepack_job_queue_seconds", "Time from submit to first start",
                             jobs.c.created_at, jobs.c.started_at, jobs.c.started_at.is_not(None),
                             QUEUE_BUCKETS)
            errors = conn.execute(sa.select(jobs.c.error).where(jobs.c.status == JobStatus.failed.value)).scalars()
            kinds = Counter(_failure_kind(e) for e in errors)
        failures = CounterMetricFamily("framepack_job_failures", "Failed jobs by kind of error", labels=["kind"])
        for kind, n in sorted(kinds.items()):
            failures.add_metric([kind], n)
        yield failures
        recent = [j for j in store.list_finished(RATE_WINDOW)
                  if j.status is JobStatus.completed and j.started_at and j.finished_at]
        seconds = sum(float(j.finished_at or 0) - float(j.started_at or 0) for j in recent)
        steps = sum(work_steps(j) for j in recent)
        yield GaugeMetricFamily("framepack_sampling_steps_per_second",
                                f"Sampling steps per second over the last {RATE_WINDOW} completed jobs",
                                value=steps / seconds if seconds > 0 else 0.0)


def _failure_kind(error: str | None) -> str:
    if not error:
        return "unknown"
    if error.startswith("worker lost"):
        return "worker_lost"
    head = error.split(":", 1)[0].strip()
    return head if head.isidentifier() else "other"


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
def metrics(state: StateDep) -> Response:
    registry = CollectorRegistry()
    registry.register(StoreCollector(state))
    return Response(generate_latest(registry), media_type="text/plain; version=0.0.4; charset=utf-8")
