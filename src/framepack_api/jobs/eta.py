"""Queue ETA from what recent jobs really took, per kind and size.

A job's work is counted in sampling steps (steps × sections for video); recent completed jobs of
the same type and resolution give seconds per step, whole-job overheads included.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from framepack_api.jobs.schema import JobStatus
from framepack_api.jobs.store import Job, JobStore
from framepack_api.params import total_sections

HISTORY = 50


def work_steps(job: Job) -> int:
    p = job.params
    steps = int(p.get("steps", 25))
    if "video_length" in p:
        return steps * total_sections(float(p["video_length"]), int(p.get("latent_window_size", 9)))
    return steps * max(1, len(p.get("prompts", [])) or 1)


def _size_key(job: Job) -> tuple[str, Any]:
    p = job.params
    return job.type.value, p.get("resolution") or (p.get("width"), p.get("height"))


class Estimator:
    def __init__(self, store: JobStore) -> None:
        finished = [j for j in store.list_finished(HISTORY)
                    if j.status is JobStatus.completed and j.started_at and j.finished_at]
        per_key: dict[tuple[str, Any], list[float]] = {}
        everything: list[float] = []
        for job in finished:
            rate = (job.finished_at - job.started_at) / max(work_steps(job), 1)  # type: ignore[operator]
            per_key.setdefault(_size_key(job), []).append(rate)
            everything.append(rate)
        self.rates = {key: statistics.median(v) for key, v in per_key.items()}
        self.fallback = statistics.median(everything) if everything else None
        self.store = store

    def seconds_per_step(self, job: Job) -> float | None:
        return self.rates.get(_size_key(job), self.fallback)

    def duration(self, job: Job) -> float | None:
        rate = self.seconds_per_step(job)
        return rate * work_steps(job) if rate is not None else None

    def remaining(self, job: Job, now: float) -> float | None:
        """Seconds until a running job finishes: its own pace once it has one, else history."""
        if job.status is JobStatus.processing and job.started_at and job.progress > 1:
            elapsed = now - job.started_at
            return max(0.0, elapsed * (100 - job.progress) / job.progress)
        return self.duration(job)

    def eta(self, job: Job, *, workers: int) -> float | None:
        """Seconds until `job` completes; None when nothing has finished yet to learn from."""
        now = time.time()
        if job.status.is_terminal:
            return 0.0
        if job.status is JobStatus.processing:
            return self.remaining(job, now)
        ahead: list[Job] = []
        for other in self.store.list_pending():
            if other.id == job.id:
                break
            ahead.append(other)
        busy = [self.remaining(j, now) for j in self.store.list_processing()]
        waits = [self.duration(j) for j in ahead]
        own = self.duration(job)
        if own is None or any(w is None for w in [*busy, *waits]):
            return None
        parallel = max(workers, 1)
        return sum(w for w in [*busy, *waits] if w is not None) / parallel + own
