"""Per-image progress of a batch job (or a RoPE batch), derived from the job row.

A batch samples its images in passes of ``batch_size`` (``rope_batch_size``) images; the worker reports
the pass as the section and the step within it, so each image's state follows from its index alone.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from framepack_api.jobs.schema import JobStatus
from framepack_api.jobs.store import Job
from framepack_api.params import ImageParams, JobType


def _rope_targets(job: Job) -> list[int] | None:
    """A RoPE batch's target indices (ascending, the images' order), from the stored params."""
    if job.type is not JobType.image or not job.params.get("rope_batch"):
        return None
    try:
        return ImageParams.model_validate(job.params).target_indices()
    except ValidationError:  # a row no longer valid under today's rules: show no per-image view
        return None


def batch_progress(job: Job) -> dict[str, Any] | None:
    """Per-image state of a prompt batch, or of a RoPE batch (one image per target index, one seed)."""
    targets = _rope_targets(job)
    info = (job.result or {}).get("info") or {}
    if targets is not None:
        prompts: list[Any] = targets
        size = max(int(job.params.get("rope_batch_size") or 1), 1)
        seeds = [job.seed] * len(targets)  # every image of a RoPE batch uses the job's one seed
    elif job.type is JobType.image_batch:
        prompts = job.params.get("prompts") or []
        size = max(int(job.params.get("batch_size") or 1), 1)
        seeds = list(job.params.get("seeds") or [])
        seeds = info.get("seeds") or seeds  # a job made without the API draws its seeds when it runs
    else:
        return None
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
        item = {"index": index, "seed": seeds[index] if index < len(seeds) else None,
                "status": status, "progress": percent}
        if targets is not None:
            item["target_index"] = targets[index]
        items.append(item)
    return {"total": len(prompts), "completed": sum(i["status"] == "completed" for i in items),
            "batch_size": size, "passes": -(-len(prompts) // size), "current_pass": current if running else None,
            "items": items}
