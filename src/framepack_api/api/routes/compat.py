"""FramePack-FastAPI's remaining paths, so that clients written for it work here unchanged.

Its submit paths (/generate and the /api/*-image ones) and /status are the native routes themselves;
this router adds the paths it had that this server names differently: /download/video, /input_image,
/worker/status and /stream/status. docs/API.md has the whole mapping.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from framepack_api.api.auth import CallerDep
from framepack_api.api.contract import errors
from framepack_api.api.deps import StateDep
from framepack_api.api.downloads import stored_file
from framepack_api.api.routes.progress import SSE_HEADERS, event_stream, resume_point
from framepack_api.api.views import require_files
from framepack_api.errors import JobNotFound, JobNotReady
from framepack_api.jobs.schema import JobStatus
from framepack_api.params import JobType

router = APIRouter(tags=["FramePack-FastAPI compatibility"])


@router.get("/download/video/{job_id}", summary="The finished MP4 (FramePack-FastAPI's path for /result)",
            responses={200: {"content": {"video/mp4": {}}}, **errors(409, 410),
                       404: {"description": "Unknown job, or not a video job"}})
def download_video(job_id: str, request: Request, state: StateDep, caller: CallerDep) -> Response:
    job = state.store.get(job_id, caller.scope)
    if job.type is not JobType.video:
        raise JobNotFound(job_id)  # an image job has no MP4; /result gives its PNG
    if job.status is not JobStatus.completed or not job.result:
        raise JobNotReady(job_id, job.status.value)
    require_files(job)
    return stored_file(state, request, job.result["video"], "video/mp4", filename=f"{job_id}.mp4")


@router.get("/input_image/{job_id}", summary="The job's start image (PNG, as the server stored it)",
            responses={200: {"content": {"image/png": {}}}, **errors(410),
                       404: {"description": "Unknown job, or no input image"}})
def input_image(job_id: str, request: Request, state: StateDep, caller: CallerDep) -> Response:
    job = state.store.get(job_id, caller.scope)
    require_files(job)
    # Video jobs name it "image", image jobs "input_image", a transfer its subject "target_image";
    # a text-to-image job has none.
    name = next((key for key in ("image", "input_image", "target_image") if key in job.inputs), None)
    if name is None:
        raise JobNotFound(f"{job_id}/input_image")
    return stored_file(state, request, job.inputs[name], "image/png", filename=f"{job_id}_input.png")


class WorkerStatus(BaseModel):
    is_running: bool = Field(description="A job (of the caller's, when auth is on) is being processed now.")
    processing_job_id: str | None = Field(None, description="The longest-running such job.")
    processing_job_ids: list[str] = Field(default_factory=list, description="All such jobs: this server may run "
                                                                            "several workers at once.")
    workers_alive: int = Field(description="Workers with a live heartbeat, loaded or loading.")


@router.get("/worker/status", response_model=WorkerStatus, summary="Whether a job is being processed now")
def worker_status(state: StateDep, caller: CallerDep) -> WorkerStatus:
    running = state.store.list_processing(caller.scope)
    workers = state.store.live_workers(state.settings.lease_seconds)
    ids = [job.id for job in running]
    return WorkerStatus(is_running=bool(ids), processing_job_id=ids[0] if ids else None,
                        processing_job_ids=ids, workers_alive=len(workers))


def _with_fastapi_names(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "progress_step": data.get("step"), "progress_total": data.get("total_steps"),
            "progress_info": data.get("message")}


@router.get("/stream/status/{job_id}", summary="Server-sent status events of one job (FramePack-FastAPI's path)",
            responses=errors(404),
            response_description="text/event-stream, as /events/{job_id}, each event's data also carrying "
                                 "progress_step, progress_total and progress_info; closes after the last one.")
async def stream_status(
    job_id: str, request: Request, state: StateDep, caller: CallerDep,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    await run_in_threadpool(state.store.get, job_id, caller.scope)  # 404 before the stream starts
    after = resume_point(last_event_id_header)
    return StreamingResponse(event_stream(request, state, after, job_id, caller.scope, _with_fastapi_names),
                             media_type="text/event-stream", headers=SSE_HEADERS)
