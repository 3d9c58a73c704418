"""How a job looks to HTTP clients of the native API."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, Field

from framepack_api.api.image_views import batch_progress
from framepack_api.errors import FilesExpired
from framepack_api.jobs.schema import JobStatus
from framepack_api.jobs.store import Job
from framepack_api.params import JobType, total_sections
from framepack_api.params.keyframes import describe_keyframes
from framepack_api.params.prompt_schedule import ScheduleError, describe_schedule


def iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat() if ts is not None else None


class JobAccepted(BaseModel):
    job_id: str = Field(examples=["3f2c6a53-0d0e-4a53-9a5d-8a2b1f4b9f11"])
    status: JobStatus = Field(examples=["pending"])
    message: str = Field(examples=["Job queued"], description="FramePack-FastAPI's clients show this; a replay "
                                                              "of an Idempotency-Key says so here.")


def accepted(job: Job, created: bool) -> dict[str, Any]:
    """The submit answer: 200 either way, since FramePack-FastAPI's clients check for 200 only."""
    message = "Job queued" if created else "Job already submitted with this Idempotency-Key"
    return JobAccepted(job_id=job.id, status=job.status, message=message).model_dump(mode="json")


class JobView(BaseModel):
    job_id: str
    type: JobType
    status: JobStatus
    progress: float = Field(description="Overall percent across all sections, 0-100.")
    step: int | None = Field(None, description="Step within the current section.")
    total_steps: int | None = Field(None, description="Steps per section.")
    section: int | None = None
    total_sections: int | None = None
    message: str | None = None
    queue_position: int | None = Field(None, description="1-based place among pending jobs.")
    seed: int | None = Field(None, description="The seed actually used (set once the job ran).")
    priority: int = 0
    attempt: int = 0
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None
    cancel_requested: bool = False
    params: dict[str, Any] = Field(default_factory=dict)
    result_url: str | None = None
    eta_seconds: float | None = Field(None, description="Estimated seconds until done, from the measured "
                                                        "speed of recent jobs of the same kind and size.")
    preview_url: str | None = Field(None, description="Newest latent preview (JPEG) while running.")
    partial_video_url: str | None = None
    thumbnail_url: str | None = None
    events_url: str | None = None
    batch_progress: dict[str, Any] | None = Field(None, description="Batch image jobs: each image's status, "
                                                                    "seed and progress.")
    prompt_schedule: list[dict[str, Any]] | None = Field(
        None, description="Video jobs whose prompt is a schedule: each prompt with its start (seconds) and "
                          "the sections (1-based, in time order) it conditions.")
    keyframes: list[dict[str, Any]] | None = Field(
        None, description="Video jobs with keyframes: each keyframe's time (seconds), the section (1-based, in "
                          "time order) whose last frame it anchors, and when that section ends (pinned_at).")
    # FramePack-FastAPI's names for step, total_steps and message, for its existing clients.
    progress_step: int | None = Field(None, description="Same as `step` (FramePack-FastAPI's name).")
    progress_total: int | None = Field(None, description="Same as `total_steps` (FramePack-FastAPI's name).")
    progress_info: str | None = Field(None, description="Same as `message` (FramePack-FastAPI's name).")


def require_files(job: Job) -> None:
    """Downloads of a job whose files the retention policy removed answer 410, not a broken file."""
    if job.files_expired_at is not None:
        raise FilesExpired(job.id)


def prompt_schedule(job: Job) -> list[dict[str, Any]] | None:
    """The schedule as the worker will apply it, from the stored params (validated at submit)."""
    params = job.params
    if job.type is not JobType.video or not isinstance(params.get("prompt"), str):
        return None
    window = int(params.get("latent_window_size", 9))
    try:
        return describe_schedule(params["prompt"], total_sections(float(params.get("video_length", 5)), window),
                                 window)
    except ScheduleError:  # a row stored before schedules existed, with text that now reads as one
        return None


def keyframes(job: Job) -> list[dict[str, Any]] | None:
    """The keyframes as the worker will pin them, from the stored params (validated at submit)."""
    times = job.params.get("keyframe_times")
    if job.type is not JobType.video or not times:
        return None
    window = int(job.params.get("latent_window_size", 9))
    return describe_keyframes([float(t) for t in times],
                              total_sections(float(job.params.get("video_length", 5)), window), window)


def job_view(job: Job, position: int | None = None) -> JobView:
    return JobView(
        job_id=job.id, type=job.type, status=job.status, progress=job.progress, step=job.step,
        total_steps=job.total_steps, section=job.section, total_sections=job.total_sections,
        message=job.message, queue_position=position, seed=job.seed, priority=job.priority,
        attempt=job.attempt, created_at=iso(job.created_at), started_at=iso(job.started_at),
        finished_at=iso(job.finished_at), error=job.error, cancel_requested=job.cancel_requested,
        params=job.params,
        result_url=f"/result/{job.id}" if job.status is JobStatus.completed and not job.files_expired_at else None,
        preview_url=f"/preview/{job.id}" if job.preview else None,
        partial_video_url=f"/preview/{job.id}/video" if job.preview else None,
        thumbnail_url=f"/thumbnail/{job.id}", events_url=f"/events/{job.id}",
        batch_progress=batch_progress(job), prompt_schedule=prompt_schedule(job),
        keyframes=keyframes(job),
        progress_step=job.step, progress_total=job.total_steps, progress_info=job.message,
    )
