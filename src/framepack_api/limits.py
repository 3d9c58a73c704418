"""The server's own limits on a video job, on top of the parameter model's ranges.

One function, used by every way in (native HTTP, OpenAI dialect, serverless), so that a job that
one entry point refuses, every entry point refuses the same way.
"""

from __future__ import annotations

import sqlalchemy as sa

from framepack_api.errors import InvalidInput, TooManyJobs
from framepack_api.hardware import resolution_cap
from framepack_api.job_memory import check_video
from framepack_api.jobs.db import read_tx
from framepack_api.jobs.schema import JobStatus
from framepack_api.jobs.store import JobStore
from framepack_api.jobs.tables import jobs
from framepack_api.params import VideoParams
from framepack_api.settings import Settings


def apply_server_limits(settings: Settings, params: VideoParams, *, default_resolution: int,
                        end_image_field: str = "end_image", keyframe_images: int = 0) -> VideoParams:
    """Fill the default resolution, then refuse what this server will not make.
    ``keyframe_images``: the keyframe images sent (only POST /generate takes them), one per time."""
    if params.resolution is None:
        params = params.model_copy(update={"resolution": default_resolution})
    if params.resolution is not None and params.resolution > settings.max_resolution:
        raise InvalidInput("resolution", f"{params.resolution} is above this server's "
                                         f"MAX_RESOLUTION of {settings.max_resolution}")
    if params.video_length > settings.max_video_seconds:
        raise InvalidInput("video_length", f"{params.video_length} s is above this server's limit of "
                                           f"{settings.max_video_seconds} s")
    cap = resolution_cap(settings)
    if params.resolution is not None and params.resolution > cap:
        # The tiny model's limit: scaled down rather than refused; the job's params show what runs.
        params = params.model_copy(update={"resolution": cap})
    check_video(settings, params, params.resolution or default_resolution)
    if params.has_end_image and params.sampling_mode == "forward":
        raise InvalidInput(end_image_field, "an end image needs sampling_mode 'reverse'; "
                                            "forward (F1) sampling cannot take one")
    if keyframe_images != len(params.keyframe_times):
        field = "keyframe_images" if keyframe_images else "keyframe_times"
        raise InvalidInput(field, f"{keyframe_images} keyframe image(s) for {len(params.keyframe_times)} "
                                  "keyframe_times: send one image per time, in the same order "
                                  "(keyframes are taken by POST /generate only)")
    return params


def check_admission(store: JobStore, settings: Settings, credential: str | None) -> None:
    """Refuse a new job (429 + Retry-After) when a limit on pending jobs is reached.

    Checked before anything is written. Two submits racing at the limit may both pass: the limits
    bound a queue's growth, they are not exact quotas.
    """
    retry = settings.admission_retry_after_seconds
    overall = settings.max_pending_jobs
    if overall and pending_jobs(store) >= overall:
        raise TooManyJobs(f"the server already has {overall} pending jobs, its limit (MAX_PENDING_JOBS); "
                          f"retry in {retry} s", retry_after=retry)
    per = settings.max_pending_jobs_per_credential
    if per and pending_jobs(store, credential) >= per:
        raise TooManyJobs(f"this credential already has {per} pending jobs, its limit "
                          f"(MAX_PENDING_JOBS_PER_CREDENTIAL); retry in {retry} s", retry_after=retry)


def pending_jobs(store: JobStore, credential: str | None = None) -> int:
    """Pending jobs in all, or of one credential.

    Jobs record their credential in an ``owner`` column once tenants exist (issue 11 item 3). Until
    then (or with auth off, when every client is the same anonymous one) a credential's count is
    every pending job.
    """
    query = sa.select(sa.func.count()).select_from(jobs).where(jobs.c.status == JobStatus.pending.value)
    owner = jobs.c.get("owner")
    if credential is not None and owner is not None:
        query = query.where(owner == credential)
    with read_tx(store.engine) as conn:
        return int(conn.execute(query).scalar_one())
