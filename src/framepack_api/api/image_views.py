"""Per-image progress of a batch job, derived from the job row.

A batch samples its images in passes of ``batch_size`` images; the worker reports the pass as the
section and the step within it, so each image's state follows from its index alone.
"""

from __future__ import annotations

from typing import Any

from framepack_api.jobs.schema import JobStatus
from framepack_api.jobs.store import Job
from framepack_api.params import JobType


def batch_progress(job: Job) -> dict[str, Any] | None:
    if job.type is not JobType.image_batch:
        return None
    prompts = job.params.get("prompts") or []
    size = max(int(job.params.get("batch_size") or 1), 1)
    seeds = list(job.params.get("seeds") or [])
    info = (job.result or {}).get("info") or {}
    seeds = info.get("seeds") or seeds  # a job made without the API draws its seeds when it runs
    running = job.status is JobStatus.processing and job.section is not None
    current = job.section if running or job.status.is_terminal else None
    step_share = (job.step or 0) / job.total_steps if job.total_steps else 0.0
    items = []
    for index in range(len(prompts)):
        batch_pass = index // size + 1
        if job.status is JobStatus.completed or (current is not None and batch_pass < current):
            status, percent = "completed", 100.0
        elif running and batch_pass == current:
            status, percent = "processing", round(100.0 * step_share, 2)
        elif job.status.is_terminal:
            status, percent = job.status.value, 0.0  # failed or cancelled before this image was done
        else:
            status, percent = "pending", 0.0
        items.append({"index": index, "seed": seeds[index] if index < len(seeds) else None,
                      "status": status, "progress": percent})
    return {"total": len(prompts), "completed": sum(i["status"] == "completed" for i in items),
            "batch_size": size, "passes": -(-len(prompts) // size), "current_pass": current if running else None,
            "items": items}
