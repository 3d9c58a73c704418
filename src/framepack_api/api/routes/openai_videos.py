"""OpenAI's video API (`/v1/videos`, Sora 2's shape) over this server's jobs.

create / retrieve / list / delete / content, answering the Video object that the official `openai`
SDK parses. See docs/OPENAI.md for how model, seconds and size map onto FramePack.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile

from framepack_api.api import openai_store
from framepack_api.api.auth import Caller, CallerDep
from framepack_api.api.contract import SUBMIT_CODES, errors
from framepack_api.api.deps import AppState, StateDep
from framepack_api.api.downloads import stored_file
from framepack_api.api.openai_errors import OpenAIError, OpenAIRoute, json_object_body
from framepack_api.api.openai_store import VideoMeta
from framepack_api.api.uploads import check_size, decode_base64, form_text
from framepack_api.api.video_requests import (
    DECIDED_BY,
    VideoRequest,
    parse_model,
    parse_seconds,
    parse_size,
    submit_request,
)
from framepack_api.api.views import require_files
from framepack_api.errors import JobNotFound, JobNotReady
from framepack_api.jobs.schema import JobStatus
from framepack_api.jobs.store import Job
from framepack_api.media.images import find_nearest_bucket
from framepack_api.media.spritesheet import write_spritesheet
from framepack_api.params import JobType, VideoParams
from framepack_api.settings import Settings

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible videos"], route_class=OpenAIRoute)

STATUS = {JobStatus.pending: "queued", JobStatus.processing: "in_progress", JobStatus.completed: "completed",
          JobStatus.failed: "failed", JobStatus.cancelled: "failed"}
REFERENCE = "input_reference"
# How long DELETE waits for a running job's worker to stop before answering.
DELETE_WAIT_SECONDS = 10.0


def video_object(job: Job, meta: VideoMeta, settings: Settings) -> dict[str, Any]:
    """The Video object of OpenAI's API for one job."""
    finished = job.status.is_terminal and job.finished_at is not None
    completed_at = int(job.finished_at) if finished and job.finished_at is not None else None
    expires_at = None
    if job.status is JobStatus.completed and completed_at is not None and settings.video_expiry_seconds > 0:
        expires_at = int(completed_at + settings.video_expiry_seconds)
    error = None
    if job.status is JobStatus.cancelled:
        error = {"code": "cancelled", "message": job.message or "The video was cancelled."}
    elif job.status is JobStatus.failed:
        error = {"code": "generation_failed", "message": job.error or "The video could not be generated."}
    return {
        "id": job.id, "object": "video", "model": meta.model, "status": STATUS[job.status],
        "progress": 100 if job.status is JobStatus.completed else int(job.progress),
        "created_at": int(meta.created_at), "completed_at": completed_at, "expires_at": expires_at,
        "size": meta.size, "frame_size": frame_size(job, meta), "seconds": meta.seconds,
        "prompt": job.params.get("prompt", ""),
        "remixed_from_video_id": job.params.get("remixed_from"), "error": error,
    }


def frame_size(job: Job, meta: VideoMeta) -> str:
    """The WxH of the frames made. ``size`` stays what was asked, since the SDK's ``VideoSize`` allows
    only OpenAI's four sizes and FramePack makes the nearest bucket at the server's resolution."""
    info = (job.result or {}).get("info") or {}
    if "width" in info and "height" in info:
        return f"{info['width']}x{info['height']}"
    if job.type is JobType.video and "resolution" in job.params:
        width, height = parse_size(meta.size)
        bucket_h, bucket_w = find_nearest_bucket(height, width, int(job.params["resolution"]))
        return f"{bucket_w}x{bucket_h}"
    return meta.size


def _answer(obj: dict[str, Any], settings: Settings) -> JSONResponse:
    headers = {}
    if obj["status"] in ("queued", "in_progress"):
        headers["openai-poll-after-ms"] = str(settings.openai_poll_after_ms)
    return JSONResponse(obj, headers=headers)


def _load(state: AppState, video_id: str, caller: Caller) -> tuple[VideoMeta, Job]:
    meta = openai_store.get(state.engine, video_id, caller.scope)
    if meta is None:
        raise JobNotFound(video_id)
    return meta, state.store.get(video_id, caller.scope)


def _openapi_body() -> dict[str, Any]:
    """The create body as the SDK sends it (multipart) or as JSON: OpenAI's fields, then the FramePack
    fields that model, seconds, size and input_reference do not decide (docs/OPENAI.md)."""
    knobs = VideoParams.model_json_schema(ref_template="#/components/schemas/{model}")
    openai_fields: dict[str, Any] = {
        "prompt": {"type": "string", "maxLength": 4000, "description": "What happens in the video."},
        "model": {"type": "string", "examples": ["sora-2"],
                  "description": "framepack (default), framepack-f1, or an OpenAI name (sora-2, sora-2-pro, ...), "
                                 "which runs framepack; a remote backend takes its REMOTE_MODEL."},
        "seconds": {"type": "string", "examples": ["4"], "description": "Length in seconds (default 4)."},
        "size": {"type": "string", "pattern": r"^\d{1,4}x\d{1,4}$", "examples": ["1280x720"],
                 "description": "WIDTHxHEIGHT (default 720x1280): aspect and pixel count of the video made."},
    }
    extra = {name: prop for name, prop in knobs["properties"].items()
             if name not in DECIDED_BY and name not in openai_fields}

    def body(reference: dict[str, Any]) -> dict[str, Any]:
        return {"type": "object", "required": ["prompt"], "additionalProperties": False,
                "properties": {**openai_fields, REFERENCE: reference, **extra}}

    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": body({"type": "string", "format": "binary",
                                                 "description": "Start image (PNG/JPEG/WebP)."})},
        "application/json": {"schema": body({"type": "object", "required": ["image_url"],
                                              "additionalProperties": False,
                                              "properties": {"image_url": {"type": "string",
                                                                           "description": "A base64 data: URL"}}})},
    }}}


@router.post("/videos", summary="Create a video (OpenAI's API)", responses=errors(*SUBMIT_CODES),
             openapi_extra=_openapi_body())
async def create_video(
    request: Request, state: StateDep, caller: CallerDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JSONResponse:
    settings = state.settings
    fields, image = await _read_create_body(request, settings.max_upload_bytes)
    prompt = fields.pop("prompt", None)
    if prompt is None:
        raise OpenAIError(400, "Missing required parameter: 'prompt'.", param="prompt",
                          code="missing_required_parameter")
    if not isinstance(prompt, str):
        raise OpenAIError(400, "Invalid type for 'prompt': expected a string.", param="prompt",
                          code="invalid_type")
    backend = settings.backend
    model = parse_model(settings, backend, fields.pop("model", None))
    seconds, video_length = parse_seconds(fields.pop("seconds", None), settings.max_video_seconds)
    width, height = parse_size(fields.pop("size", None))
    req = VideoRequest(prompt=prompt, model=model, seconds=seconds, video_length=video_length,
                       width=width, height=height, knobs=fields, image=image)
    submitted = await run_in_threadpool(submit_request, state, req, backend, idempotency_key=idempotency_key,
                                        owner=caller.owner)
    meta = await run_in_threadpool(openai_store.record, state.engine, submitted.job, model=model,
                                   seconds=seconds, size=f"{width}x{height}")
    return _answer(video_object(submitted.job, meta, settings), settings)


async def _read_create_body(request: Request, max_bytes: int) -> tuple[dict[str, Any], bytes | None]:
    """Fields and the reference image from multipart (the SDK's way) or JSON."""
    content_type = request.headers.get("content-type", "")
    fields: dict[str, Any] = {}
    image: bytes | None = None
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_part_size=max_bytes + 1)
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key != REFERENCE:
                    raise OpenAIError(400, f"Unexpected file field '{key}'.", param=key, code="unknown_parameter")
                image = await value.read(max_bytes + 1)
                check_size(REFERENCE, image, max_bytes)
            elif key in (REFERENCE, f"{REFERENCE}[image_url]"):
                image = _image_url(value, max_bytes)
            elif key.startswith(f"{REFERENCE}["):
                raise _unsupported_reference(key)
            else:
                fields[key] = form_text(key, value)
    elif content_type.startswith("application/json"):
        body = await json_object_body(request)
        reference = body.pop(REFERENCE, None)
        if isinstance(reference, dict):
            if set(reference) - {"image_url"} or "image_url" not in reference:
                raise _unsupported_reference(f"{REFERENCE}.{next(iter(set(reference) - {'image_url'}), '')}")
            image = _image_url(reference["image_url"], max_bytes)
        elif isinstance(reference, str):
            image = _image_url(reference, max_bytes)
        elif reference is not None:
            raise OpenAIError(400, "'input_reference' must be {\"image_url\": \"data:...\"}.",
                              param=REFERENCE, code="invalid_type")
        fields = body
    else:
        raise OpenAIError(400, "Send multipart/form-data or application/json.", code="invalid_content_type")
    return fields, image


def _image_url(value: Any, max_bytes: int) -> bytes:
    if not isinstance(value, str) or not value.strip().lower().startswith("data:"):
        raise OpenAIError(400, "input_reference.image_url must be a base64 data: URL; this server does not "
                               "fetch remote URLs.", param=f"{REFERENCE}.image_url", code="invalid_value")
    data = decode_base64(REFERENCE, value, max_bytes)
    check_size(REFERENCE, data, max_bytes)
    return data


def _unsupported_reference(param: str) -> OpenAIError:
    return OpenAIError(400, "Only an uploaded file or an image_url data: URL can be an input_reference "
                            "here (there is no files API).", param=param, code="unsupported_parameter")


@router.get("/videos/{video_id}", summary="Retrieve a video", responses=errors(404))
def retrieve_video(video_id: str, state: StateDep, caller: CallerDep) -> JSONResponse:
    meta, job = _load(state, video_id, caller)
    return _answer(video_object(job, meta, state.settings), state.settings)


@router.get("/videos", summary="List videos")
def list_videos(
    state: StateDep, caller: CallerDep,
    after: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Annotated[Literal["asc", "desc"], Query()] = "desc",
) -> dict[str, Any]:
    try:
        items, has_more = openai_store.page(state.engine, after=after, limit=limit, order=order,
                                            owner=caller.scope)
    except KeyError:
        raise OpenAIError(400, f"Invalid value for 'after': no video with id '{after}'.", param="after",
                          code="invalid_value") from None
    data = [video_object(job, meta, state.settings) for meta, job in items]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": has_more}


@router.delete("/videos/{video_id}", summary="Delete a video (cancels it when running)", responses=errors(404))
def delete_video(video_id: str, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    meta = openai_store.get(state.engine, video_id, caller.scope)
    if meta is None:
        raise JobNotFound(video_id)
    try:
        job = state.store.cancel(video_id, caller.scope)
    except JobNotFound:
        openai_store.delete(state.engine, video_id)
        return {"id": video_id, "object": "video.deleted", "deleted": True}
    # A running job stops at its next step; its worker then cleans up (a remote backend deletes
    # the remote video). Wait a little for that, so that the files can go with the row.
    deadline = time.monotonic() + DELETE_WAIT_SECONDS
    while not job.status.is_terminal and time.monotonic() < deadline:
        time.sleep(0.1)
        job = state.store.get(video_id)
    openai_store.delete(state.engine, video_id)
    if job.status.is_terminal:  # else the job ends cancelled in its worker's hands; its row stays
        state.store.delete(video_id)
        state.storage.remove_job(video_id)
    return {"id": video_id, "object": "video.deleted", "deleted": True}


@router.get("/videos/{video_id}/content", summary="Download the MP4, a thumbnail or a spritesheet",
            responses={200: {"content": {"video/mp4": {}, "image/jpeg": {}}}, **errors(404)})
async def video_content(
    video_id: str, request: Request, state: StateDep, caller: CallerDep,
    variant: Annotated[Literal["video", "thumbnail", "spritesheet"], Query()] = "video",
) -> Response:
    meta, job = await run_in_threadpool(_load, state, video_id, caller)
    if job.status is not JobStatus.completed or not job.result:
        raise JobNotReady(video_id, STATUS[job.status])
    require_files(job)
    expires_at = video_object(job, meta, state.settings)["expires_at"]
    if expires_at is not None and time.time() >= expires_at:
        await run_in_threadpool(state.storage.remove_outputs, video_id)
        raise OpenAIError(404, f"The content of video '{video_id}' has expired.", code="video_expired")
    video = job.result["video"]
    if variant == "video":
        return await run_in_threadpool(stored_file, state, request, video, "video/mp4", filename=f"{video_id}.mp4")
    if variant == "thumbnail":
        if "thumbnail" not in job.result:
            raise OpenAIError(404, "This video has no thumbnail.", code="variant_not_found")
        return await run_in_threadpool(stored_file, state, request, job.result["thumbnail"], "image/jpeg")
    sheet = video.rsplit("/", 1)[0] + "/spritesheet.jpg"
    if await run_in_threadpool(state.storage.size, sheet) is None:  # made on first request, then kept
        await run_in_threadpool(_make_spritesheet, state, video, sheet)
    return await run_in_threadpool(stored_file, state, request, sheet, "image/jpeg")


def _make_spritesheet(state: AppState, video: str, sheet: str) -> None:
    storage = state.storage
    local = storage.local_path(video)
    with tempfile.TemporaryDirectory(dir=storage.root / "work") as tmp:
        if local is None:  # an object: frames are read from a copy on the API's scratch disk
            local = Path(tmp) / "video.mp4"
            local.write_bytes(storage.read_bytes(video))
        made = Path(tmp) / "spritesheet.jpg"
        write_spritesheet(local, made)
        storage.put_file(sheet, made)
