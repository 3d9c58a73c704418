"""GET /metrics in Prometheus' text format, read from the job store at scrape time.

Everything comes from the database, so every API process reports the same numbers and nothing
is lost when one restarts. Counters and histograms are running totals (jobs/metric_totals.py),
so deleting jobs never lowers them; gauges are index-served counts. No scrape scans the jobs table.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from framepack_api.api.deps import AppState, StateDep
from framepack_api.jobs import metric_totals
from framepack_api.jobs.db import read_tx
from framepack_api.jobs.eta import work_steps
from framepack_api.jobs.schema import JobStatus

router = APIRouter(tags=["service"])

RATE_WINDOW = 20


def _histogram(totals: dict[str, float], name: str, doc: str, buckets: tuple[float, ...]) -> HistogramMetricFamily:
    count = int(totals.get("count", 0))
    cumulative = [(str(b), int(totals.get(str(b), 0))) for b in buckets]
    return HistogramMetricFamily(name, doc, buckets=[*cumulative, ("+Inf", count)],
                                 sum_value=totals.get("sum", 0.0))


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
            totals = metric_totals.read(conn)
        yield _histogram(totals.get(metric_totals.DURATION, {}), "framepack_job_duration_seconds",
                         "Run time of completed jobs", metric_totals.DURATION_BUCKETS)
        yield _histogram(totals.get(metric_totals.QUEUE, {}), "framepack_job_queue_seconds",
                         "Time from submit to first start", metric_totals.QUEUE_BUCKETS)
        failures = CounterMetricFamily("framepack_job_failures", "Failed jobs by kind of error", labels=["kind"])
        for kind, n in sorted(totals.get(metric_totals.FAILURES, {}).items()):
            failures.add_metric([kind], n)
        yield failures
        recent = [j for j in store.list_finished(RATE_WINDOW)
                  if j.status is JobStatus.completed and j.started_at and j.finished_at]
        seconds = sum(float(j.finished_at or 0) - float(j.started_at or 0) for j in recent)
        steps = sum(work_steps(j) for j in recent)
        yield GaugeMetricFamily("framepack_sampling_steps_per_second",
                                f"Sampling steps per second over the last {RATE_WINDOW} completed jobs",
                                value=steps / seconds if seconds > 0 else 0.0)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
def metrics(state: StateDep) -> Response:
    registry = CollectorRegistry()
    registry.register(StoreCollector(state))
    return Response(generate_latest(registry), media_type="text/plain; version=0.0.4; charset=utf-8")
