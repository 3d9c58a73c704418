"""Seed 004's training-video service at /api/video-generation/: one video per training run.

Contract kept from the seed: ``GET /`` health, ``POST /generate {run_id, drill_text}``,
``GET /status/{run_id}``, ``DELETE /cache/{run_id}``. What changed behind it: the video comes from
local FramePack or a remote OpenAI-compatible server (``training_backend``), the cache lives in the
database (it survives restarts, with a TTL), and ``video_url`` points here, so it does not expire
while the run is cached.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, Field, field_validator

from framepack_api import __version__
from framepack_api.api.auth import Caller, CallerDep
from framepack_api.api.contract import errors
from framepack_api.api.deps import AppState, StateDep
from framepack_api.api.downloads import stored_file
from framepack_api.api.video_requests import VideoRequest, submit_request
from framepack_api.api.views import require_files
from framepack_api.errors import JobNotFound, JobNotReady
from framepack_api.jobs.schema import JobStatus
from framepack_api.jobs.store import Job
from framepack_api.params.fields import Text, text_problem
from framepack_api.training_cache import CachedRun, TrainingCache

PREFIX = "/api/video-generation"
router = APIRouter(prefix=PREFIX, tags=["training video (seed 004)"])

# Seed 004 asked Sora for 1280x720; here it picks the FramePack bucket (aspect and resolution).
TRAINING_SIZE = (1280, 720)
PROMPT_TEMPLATE = ("An athlete demonstrates this training drill with clear, correct form, whole body in view, "
                   "steady camera, plain background: {drill}")
RunId = int | str


class GenerateRequest(BaseModel):
    run_id: RunId = Field(description="The analysis run the video belongs to.", examples=[1])
    drill_text: Text = Field(min_length=1, max_length=3000, description="The drill to show.",
                            examples=["High knees: lift each knee to hip height, 30 seconds."])

    @field_validator("run_id", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: object) -> object:
        if isinstance(value, bool):  # JSON true would otherwise become run 1
            raise ValueError("run_id must be a number or a string, not a boolean")
        return value

    @field_validator("run_id")
    @classmethod
    def _fits_the_cache(cls, value: RunId) -> RunId:
        problem = text_problem(str(value))
        if problem:
            raise ValueError(f"run_id {problem}")
        if not 0 < len(str(value)) <= 128 or "/" in str(value):
            raise ValueError("run_id must be 1 to 128 characters, without '/'")
        return value


class GenerateResponse(BaseModel):
    run_id: RunId
    status: str = Field(description="pending | processing | completed | failed | cancelled")
    video_url: str | None = Field(None, description="The MP4, once completed (a path on this server).")


class StatusResponse(GenerateResponse):
    error: str | None = None


def _echo(run_id: str) -> RunId:
    """Answer a run id as the client's own type: seed 004's runs are numbers."""
    return int(run_id) if run_id.isdigit() and str(int(run_id)) == run_id else run_id


def _cache(state: AppState, caller: Caller) -> TrainingCache:
    """The caller's own runs: run ids are per credential, admins included."""
    return TrainingCache(state.engine, ttl_seconds=state.settings.training_cache_ttl_seconds, owner=caller.owner)


def _view(run: CachedRun, job: Job) -> dict[str, Any]:
    completed = job.status is JobStatus.completed
    return {"run_id": _echo(run.run_id), "status": job.status.value,
            "video_url": f"{PREFIX}/video/{run.run_id}" if completed else None,
            "error": job.error if job.status is JobStatus.failed else None}


def _job(state: AppState, job_id: str, owner: str) -> Job | None:
    try:
        return state.store.get(job_id, owner)
    except JobNotFound:
        return None


def _current(state: AppState, caller: Caller, run_id: str) -> tuple[CachedRun, Job] | None:
    """The run's cached video, unless it expired or its job is gone (then it is discarded)."""
    cache = _cache(state, caller)
    run = cache.get(run_id)
    if run is None:
        return None
    job = _job(state, run.job_id, caller.owner)
    if job is None or run.expired(cache.clock()):
        _discard(state, cache, run)
        return None
    return run, job


def _discard(state: AppState, cache: TrainingCache, run: CachedRun) -> None:
    """Forget the run's video: the row, then the job (cancelled first) and its files."""
    cache.remove(run.run_id, run.job_id)
    _drop_job(state, run.job_id, cache.owner)


def _drop_job(state: AppState, job_id: str, owner: str) -> None:
    try:
        job = state.store.cancel(job_id, owner)
    except JobNotFound:
        state.storage.remove_job(job_id)
        return
    if job.status.is_terminal:  # a running job keeps its row until its worker sees the cancel
        state.store.delete(job_id)
        state.storage.remove_job(job_id)


def _generate(state: AppState, caller: Caller, run_id: str, drill_text: str) -> tuple[CachedRun, Job]:
    found = _current(state, caller, run_id)
    if found is not None:
        run, job = found
        if job.status not in (JobStatus.failed, JobStatus.cancelled):
            return run, job
        _discard(state, _cache(state, caller), run)  # a failed video is retried by asking again
    settings = state.settings
    backend = settings.training_backend
    seconds = settings.training_video_seconds
    model = settings.remote_model if backend == "remote" else "framepack"  # reverse sampling
    prompt = PROMPT_TEMPLATE.format(drill=drill_text.strip())
    req = VideoRequest(prompt=prompt, model=model, seconds=f"{seconds:g}", video_length=seconds,
                       width=TRAINING_SIZE[0], height=TRAINING_SIZE[1], knobs=dict(settings.training_params))
    submitted = submit_request(state, req, backend, owner=caller.owner)
    winner = _cache(state, caller).put_if_absent(run_id, submitted.job.id, drill_text)
    if winner.job_id != submitted.job.id:  # another request for this run won the race
        _drop_job(state, submitted.job.id, caller.owner)
        return winner, state.store.get(winner.job_id, caller.owner)
    return winner, submitted.job


@router.get("/", summary="Health of the training-video service")
def service_health(state: StateDep, caller: CallerDep) -> dict[str, Any]:
    settings = state.settings
    return {"status": "healthy", "service": "video_generation", "version": __version__,
            "backend": settings.training_backend,
            "model": settings.remote_model if settings.training_backend == "remote" else state.model,
            "cached_runs": _cache(state, caller).count()}


@router.post("/generate", response_model=GenerateResponse, responses=errors(429, 507),
             summary="Start (or return) the training video of a run")
async def generate(body: GenerateRequest, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    run, job = await run_in_threadpool(_generate, state, caller, str(body.run_id), body.drill_text)
    view = _view(run, job)
    view.pop("error")
    return view


@router.get("/status/{run_id}", response_model=StatusResponse, summary="The run's video status",
            responses=errors(404))
def status(run_id: str, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    found = _current(state, caller, run_id)
    if found is None:
        raise HTTPException(404, f"no video for run {run_id}")
    return _view(*found)


@router.get("/video/{run_id}", summary="The run's MP4",
            responses={200: {"content": {"video/mp4": {}}}, **errors(404, 409, 410)})
def video(run_id: str, request: Request, state: StateDep, caller: CallerDep) -> Response:
    found = _current(state, caller, run_id)
    if found is None:
        raise HTTPException(404, f"no video for run {run_id}")
    _, job = found
    if job.status is not JobStatus.completed or not job.result:
        raise JobNotReady(job.id, job.status.value)
    require_files(job)
    return stored_file(state, request, job.result["video"], "video/mp4", filename=f"training-{run_id}.mp4")


@router.delete("/cache/{run_id}", summary="Forget the run's video; the next /generate makes a new one")
def clear_cache(run_id: str, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    cache = _cache(state, caller)
    run = cache.get(run_id)
    if run is not None:
        _discard(state, cache, run)
    return {"run_id": _echo(run_id), "deleted": run is not None}
