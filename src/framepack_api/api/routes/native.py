"""The native API of seeds 000/001: /generate, /status, /result, /queue, /cancel, /health."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import UploadFile

from framepack_api.api.auth import CallerDep, get_caller_now, has_credentials
from framepack_api.api.contract import SUBMIT_CODES, errors
from framepack_api.api.deps import AppState, StateDep, StoreDep, get_state_now
from framepack_api.api.downloads import stored_file
from framepack_api.api.routes.images import image_file
from framepack_api.api.submit import parse_priority, submit_video, validate_video_params
from framepack_api.api.uploads import check_size, decode_base64, form_text
from framepack_api.api.video_input import decode_video_base64, input_video, video_resolution
from framepack_api.api.views import JobAccepted, JobView, accepted, iso, job_view, require_files
from framepack_api.disk import measure
from framepack_api.errors import InvalidInput, JobNotReady
from framepack_api.hardware import TINY_WARNING
from framepack_api.jobs.db import ping
from framepack_api.jobs.events import EVENT_KINDS
from framepack_api.jobs.notify import describe
from framepack_api.jobs.schema import JobStatus
from framepack_api.jobs.status_read import read_status
from framepack_api.params import IMAGE_JOB_TYPES, VideoParams
from framepack_api.params.keyframes import MAX_KEYFRAMES, is_keyframe_input, keyframe_input
from framepack_api.webhooks import parse_webhook_events, validate_webhook_url
from framepack_api.weights import HealthState, health_report

router = APIRouter(tags=["video jobs"])

IMAGE_FIELDS = ("image", "end_image")
VIDEO_FIELD = "video"  # an extension job's input MP4 (docs/API.md#video-extension)
FILE_FIELDS = (*IMAGE_FIELDS, VIDEO_FIELD)
SERVER_SET = ("has_end_image", "has_input_video", "remixed_from")
KEYFRAME_FIELD = "keyframe_images"  # repeated file parts, or a JSON list of base64 strings
# In a form these may repeat (lora_paths=a&lora_paths=b) or hold a JSON list or "a,b".
LIST_FIELDS = ("lora_paths", "lora_scales", "webhook_events", "keyframe_times")


def _form_list(field: str, value: str) -> list[str]:
    text = value.strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):
            raise InvalidInput(field, f"not a valid JSON list: {text[:80]}") from None
        return [str(v) for v in parsed] if isinstance(parsed, list) else [text]
    return [part.strip() for part in text.split(",") if part.strip()]


class GenerateJSON(VideoParams):
    image: str | None = Field(None, description="Start image, base64 (a data: URL prefix is allowed). Required "
                                                "unless the job extends a video.")
    video: str | None = Field(None, description="Extend this video (MP4, base64) by `video_length` seconds; "
                                                "or give `extend_job_id`.")
    end_image: str | None = Field(None, description="Optional end image, base64; reverse sampling only.")
    priority: int = Field(0, ge=-100, le=100, description="Higher runs first; ties run oldest first.")
    webhook_url: str | None = Field(None, description="POST signed JSON events here (http/https).",
                                    examples=["https://example.com/hooks/framepack"])
    webhook_events: list[str] | None = Field(
        None, description="Event kinds to deliver: status, progress, preview, completed, failed, cancelled. "
                          "Default: the terminal ones. In multipart, a comma-separated string.")
    keyframe_images: list[str] | None = Field(
        None, max_length=MAX_KEYFRAMES,
        description="Images pinned inside the video, base64, one per `keyframe_times` entry in the same order "
                    "(reverse sampling only). In multipart, repeat the `keyframe_images` file part.")


def _openapi_body() -> dict[str, Any]:
    schema = GenerateJSON.model_json_schema()
    for name in SERVER_SET:
        schema["properties"].pop(name, None)
    schema["properties"]["webhook_events"]["anyOf"][0]["items"]["enum"] = sorted(EVENT_KINDS)
    multipart = json.loads(json.dumps(schema))
    for prop in multipart["properties"].values():
        # A form cannot send null: an optional field is left out instead.
        branches = [b for b in prop.pop("anyOf", []) if b.get("type") != "null"]
        if len(branches) == 1:
            prop.update(branches[0])
        elif branches:
            prop["anyOf"] = branches
    for name in FILE_FIELDS:
        multipart["properties"][name] = {"type": "string", "format": "binary",
                                         "description": schema["properties"][name].get("description", "")}
    multipart["properties"][KEYFRAME_FIELD] = {
        "type": "array", "items": {"type": "string", "format": "binary"}, "maxItems": MAX_KEYFRAMES,
        "description": schema["properties"][KEYFRAME_FIELD].get("description", "")}
    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": multipart},
        "application/json": {"schema": schema, "example": {
            "image": "<base64 PNG or JPEG>", "prompt": "The girl dances gracefully", "video_length": 5,
            "seed": 31337, "steps": 25}},
    }}}


@router.post("/generate", status_code=200, response_model=JobAccepted, openapi_extra=_openapi_body(),
             summary="Queue an image-to-video job", responses=errors(400, *SUBMIT_CODES))
async def generate(
    request: Request, state: StateDep, caller: CallerDep,
    idempotency_key: Annotated[str | None, Header(max_length=255,
                                                  description="Same key, same job: retries are safe.")] = None,
) -> JSONResponse:
    fields, images = await _read_generate_body(request, state.settings.max_upload_bytes)
    upload = images.pop(VIDEO_FIELD, None)
    extends = upload is not None or bool(fields.get("extend_job_id"))
    if extends and "image" in images:
        raise InvalidInput("image", "an extension starts from the input video's own frames; leave `image` out")
    priority = parse_priority(fields.pop("priority", None))
    webhook_url = fields.pop("webhook_url", None)
    if webhook_url:
        webhook_url = await run_in_threadpool(validate_webhook_url, str(webhook_url), state.settings)
    webhook_events = parse_webhook_events(fields.pop("webhook_events", None))
    params = validate_video_params(state, fields, has_end_image="end_image" in images, has_input_video=extends,
                                   keyframe_images=sum(1 for name in images if is_keyframe_input(name)))
    video = None
    if extends:
        checked = await run_in_threadpool(input_video, state, caller.scope, upload, params.extend_job_id)
        video = checked.data
        if not fields.get("resolution"):  # the input's own size, not the server's default resolution
            params = params.model_copy(update={"resolution": video_resolution(state, checked)})
    job, created = await run_in_threadpool(
        submit_video, state, params, images, priority=priority, idempotency_key=idempotency_key,
        webhook_url=webhook_url, webhook_events=webhook_events, owner=caller.owner, video=video,
    )
    return JSONResponse(accepted(job, created), headers={"Location": f"/status/{job.id}"})


async def _read_generate_body(request: Request, max_bytes: int) -> tuple[dict[str, Any], dict[str, bytes]]:
    content_type = request.headers.get("content-type", "")
    fields: dict[str, Any] = {}
    images: dict[str, bytes] = {}
    keyframes: list[bytes] = []
    if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await request.form(max_part_size=max_bytes + 1)
        for key, value in form.multi_items():
            if key == KEYFRAME_FIELD:
                field = f"{KEYFRAME_FIELD}.{len(keyframes)}"
                if len(keyframes) == MAX_KEYFRAMES:
                    raise InvalidInput(KEYFRAME_FIELD, f"at most {MAX_KEYFRAMES} keyframe images")
                if isinstance(value, UploadFile):
                    data = await value.read(max_bytes + 1)
                else:
                    data = decode_base64(field, value, max_bytes)
                check_size(field, data, max_bytes)
                keyframes.append(data)
            elif isinstance(value, UploadFile):
                if key not in FILE_FIELDS:
                    raise InvalidInput(key, "unexpected file field")
                data = await value.read(max_bytes + 1)
                if data or key == "image":
                    check_size(key, data, max_bytes)
                    images[key] = data
            elif key == VIDEO_FIELD:
                if value:
                    images[key] = decode_video_base64(key, value, max_bytes)
            elif key in IMAGE_FIELDS:
                if value:
                    images[key] = decode_base64(key, value, max_bytes)
                    check_size(key, images[key], max_bytes)
            elif key in LIST_FIELDS:
                fields.setdefault(key, []).extend(_form_list(key, form_text(key, value)))
            else:
                fields[key] = form_text(key, value)
    elif content_type.startswith("application/json"):
        try:
            body = await request.json()
        except ValueError:
            raise InvalidInput("body", "not valid JSON") from None
        if not isinstance(body, dict):
            raise InvalidInput("body", "must be a JSON object")
        for key in IMAGE_FIELDS:
            value = body.pop(key, None)
            if value is None:
                continue
            if not isinstance(value, str):
                raise InvalidInput(key, "must be a base64 string")
            images[key] = decode_base64(key, value, max_bytes)
            check_size(key, images[key], max_bytes)
        video = body.pop(VIDEO_FIELD, None)
        if video is not None:
            if not isinstance(video, str):
                raise InvalidInput(VIDEO_FIELD, "must be a base64 string")
            images[VIDEO_FIELD] = decode_video_base64(VIDEO_FIELD, video, max_bytes)
        listed = body.pop(KEYFRAME_FIELD, None)
        if listed is not None:
            if not isinstance(listed, list) or not all(isinstance(v, str) for v in listed):
                raise InvalidInput(KEYFRAME_FIELD, "must be a list of base64 strings")
            if len(listed) > MAX_KEYFRAMES:
                raise InvalidInput(KEYFRAME_FIELD, f"at most {MAX_KEYFRAMES} keyframe images, got {len(listed)}")
            for index, value in enumerate(listed):
                field = f"{KEYFRAME_FIELD}.{index}"
                keyframes.append(decode_base64(field, value, max_bytes))
                check_size(field, keyframes[-1], max_bytes)
        fields = body
    else:
        raise InvalidInput("body", "send multipart/form-data with an `image` file, "
                                   "or application/json with a base64 `image`")
    if "image" not in images and VIDEO_FIELD not in images and not fields.get("extend_job_id"):
        raise InvalidInput("image", "required: the start image (or `video` / `extend_job_id` to extend a video)")
    for name in SERVER_SET:  # set by the server, never by the client
        fields.pop(name, None)
    images.update({keyframe_input(index): data for index, data in enumerate(keyframes)})
    return fields, images


@router.get("/status/{job_id}", response_model=JobView, summary="A job's status and progress",
            responses=errors(404))
async def status(job_id: str, request: Request) -> Response:
    # The hottest route, so: state and caller read straight from the request (each dependency costs
    # FastAPI a resolution per request), one statement, and the model serialised once, straight to
    # JSON (FastAPI would validate the returned model again against response_model, then encode it).
    state, caller = get_state_now(request), get_caller_now(request)
    # On SQLite (WAL) a read never waits for a writer and takes about as long as a thread hop costs,
    # at any queue depth (a position reads block counts, jobs/rank.py: ~0.2 ms for the last of
    # 100k pending), so it runs right here; a thread per read would also make every statement wait for the GIL
    # behind the event loop. PostgreSQL is a network round trip away: that read goes to a thread.
    if state.engine.dialect.name == "sqlite":
        body = _status_json(state, job_id, caller.scope)
    else:
        body = await run_in_threadpool(_status_json, state, job_id, caller.scope)
    return Response(body, media_type="application/json")


def _status_json(state: AppState, job_id: str, scope: str | None) -> bytes:
    read = read_status(state.store, job_id, scope, live_within=state.settings.lease_seconds,
                       reader=state.status_reader)
    view = job_view(read.job, read.position)
    view.eta_seconds = read.eta_seconds
    return view.model_dump_json().encode()


@router.get("/result/{job_id}", summary="The finished MP4",
            responses={200: {"content": {"video/mp4": {}}}, **errors(404, 409, 410)})
def result(job_id: str, request: Request, state: StateDep, caller: CallerDep) -> Response:
    job = state.store.get(job_id, caller.scope)
    if job.status is not JobStatus.completed or not job.result:
        raise JobNotReady(job_id, job.status.value)
    require_files(job)
    if job.type in IMAGE_JOB_TYPES:  # the PNG, or a batch's ZIP
        return image_file(state, request, job, None)
    return stored_file(state, request, job.result["video"], "video/mp4", filename=f"{job_id}.mp4")


@router.get("/queue", summary="Pending jobs in run order, then running, then recently finished")
def queue(state: StateDep, caller: CallerDep) -> dict[str, list[dict[str, Any]]]:
    """With tenants, ``queue`` lists the caller's own jobs (positions in the whole queue) and
    ``others`` the rest of the queue as bare positions: no ids, prompts or owners."""
    store, scope = state.store, caller.scope
    entries: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    for position, job in enumerate(store.list_pending(), start=1):
        if scope is None or job.owner == scope:
            entries.append(_queue_entry(job, position))
        else:
            others.append({"status": job.status.value, "position": position})
    for job in store.list_processing():
        if scope is None or job.owner == scope:
            entries.append(_queue_entry(job, None))
        else:
            others.append({"status": job.status.value, "position": None})
    entries += [_queue_entry(job, None) for job in store.list_finished(state.settings.recent_finished_limit, scope)]
    return {"queue": entries} if scope is None else {"queue": entries, "others": others}


def _queue_entry(job: Any, position: int | None) -> dict[str, Any]:
    return {"job_id": job.id, "type": job.type.value, "status": job.status.value, "position": position,
            "progress": job.progress, "priority": job.priority, "prompt": job.params.get("prompt", "")[:200],
            "created_at": iso(job.created_at), "finished_at": iso(job.finished_at)}


@router.post("/cancel/{job_id}", response_model=JobView, summary="Cancel a job (idempotent)", responses=errors(404))
def cancel(job_id: str, store: StoreDep, caller: CallerDep) -> JobView:
    job = store.cancel(job_id, caller.scope)
    return job_view(job, store.position(job))


class Health(BaseModel):
    status: Literal["ok", "degraded", "unavailable"] = Field(
        description="ok (200); degraded or unavailable (503): a load balancer should send elsewhere.")
    reasons: list[str] = Field(default_factory=list, description="Why not ok, e.g. no live worker.")
    database: bool
    workers_alive: int = Field(description="Workers with the model loaded, idle or busy.")
    workers_starting: int = Field(0, description="Workers still loading the model.")
    workers: list[dict[str, Any]] = Field(description="Each worker's id, state, pid, host, job, device "
                                                      "(cuda:N (GPU-uuid) or cpu) and CUDA_VISIBLE_DEVICES; "
                                                      "empty without credentials when auth is on.")
    model: str
    tiny_model: bool
    warning: str | None = None
    counts: dict[str, int]
    disk_free_mb: float | None = Field(None, description="Free space where data_dir lives.")
    disk_floor_mb: float = Field(0, description="Below this, submits get 507 and running jobs fail.")
    weights: dict[str, HealthState] = Field(
        default_factory=dict, description="The real model's parts (`framepack-api models download` names) in "
                                          "this host's Hugging Face cache; loading while a worker loads them.")
    push: Literal["live", "reconnecting", "off"] = Field(
        "off", description="This API process's wake-ups (LISTEN/NOTIFY, local sockets): off or reconnecting "
                           "means its event streams and webhooks poll (docs/SCALING.md#push).")


@router.get("/health", response_model=Health, tags=["service"],
            responses={503: {"model": Health, "description": "Degraded: no live worker, the disk below its "
                                                               "floor, or the database unreachable"}})
def health(request: Request, state: StateDep) -> JSONResponse:
    settings = state.settings
    db_ok = ping(state.engine)
    workers: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    if db_ok:
        try:
            workers = state.store.live_workers(settings.lease_seconds)
            counts = state.store.counts()
        except SQLAlchemyError:  # lost between the ping and these reads
            db_ok, workers = False, []
    ready = [w for w in workers if w["state"] in ("idle", "busy")]
    space = measure(state.storage.root, settings.min_free_disk_mb)
    reasons = []
    if not db_ok:
        reasons.append("database unreachable")
    elif not ready:
        reasons.append("no live worker" + (f" ({len(workers)} loading the model)" if workers else ""))
    if space.low:
        reasons.append(space.reason())
    # Open to load balancers, so without credentials it names no host, process or job.
    shown = workers if has_credentials(request) else []
    body = Health(
        status="ok" if not reasons else "degraded" if db_ok else "unavailable", reasons=reasons,
        database=db_ok, workers_alive=len(ready), workers_starting=len(workers) - len(ready),
        workers=[{"id": w["id"], "state": w["state"], "pid": w["pid"], "hostname": w["hostname"],
                  "current_job_id": w["current_job_id"], "preset": w["preset"], "device": w["device"],
                  "cuda_visible_devices": w["visible_devices"]} for w in shown],
        model=state.model, tiny_model=state.model == "tiny",
        warning=TINY_WARNING if state.model == "tiny" else None,
        counts=counts,
        disk_free_mb=round(space.free_mb, 1), disk_floor_mb=settings.min_free_disk_mb,
        weights=health_report(settings, loading=state.model != "tiny" and len(workers) > len(ready)),
        push=describe(state.listener)["push"],
    )
    return JSONResponse(body.model_dump(), status_code=503 if reasons else 200)
