"""OpenAI's video extension and remix (`POST /v1/videos/extensions`, `POST /v1/videos/{id}/remix`).

- extensions (the SDK's ``videos.extend(prompt, seconds, video)``): ``video`` is an uploaded file or
  ``{"id": "<video id>"}`` (multipart ``video[id]``, as the SDK sends it); the answer is a new Video
  whose job continues that video by ``seconds`` with FramePack F1 (``framepack-f1``), at the input's
  own size. By default the new video is the whole one (input + new frames); the FramePack field
  ``extension_output: "new"`` keeps only the new part.
- remix (``videos.remix(video_id, prompt=...)``): a new video from the same inputs and settings as
  the source (start image, end image or input video, every FramePack field, and the seed the source
  actually used) with the new prompt; its ``remixed_from_video_id`` names the source.
- edits (``videos.edit``) is not offered: an OpenAI-shaped 400 says so.

See docs/OPENAI.md.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from framepack_api.api import openai_store
from framepack_api.api.auth import CallerDep
from framepack_api.api.contract import SUBMIT_CODES, errors
from framepack_api.api.deps import AppState, StateDep
from framepack_api.api.openai_errors import OpenAIError, OpenAIRoute, json_object_body
from framepack_api.api.routes.openai_videos import _answer, _load, video_object
from framepack_api.api.submit import submit_video, validate_video_params
from framepack_api.api.uploads import check_size, form_text
from framepack_api.api.video_input import decode_video_base64, input_video, video_resolution
from framepack_api.api.video_requests import check_knobs, parse_seconds
from framepack_api.jobs.store import Job
from framepack_api.params import JobType, VideoParams

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible videos"], route_class=OpenAIRoute)

EXTENSION_MODEL = "framepack-f1"  # extension is forward (F1) sampling
# Fields of the extension body that a FramePack knob must not override.
DECIDED_HERE = {"extend_job_id": "video", "has_input_video": "video", "remixed_from": "remix"}


_PROMPT = {"type": "string", "maxLength": 4000, "description": "What happens next (a schedule is allowed)."}
_VIDEO_REF = {"type": "object", "required": ["id"], "additionalProperties": False,
              "properties": {"id": {"type": "string", "description": "A completed video of yours."}}}


def _json_and_multipart(properties: dict[str, Any], reference: dict[str, Any] | None = None,
                        upload: dict[str, Any] | None = None) -> dict[str, Any]:
    """An openapi_extra request body, as the SDK sends it; the routes read the raw request themselves."""
    def schema(video: dict[str, Any] | None) -> dict[str, Any]:
        props = {**properties, **({"video": video} if video is not None else {})}
        return {"type": "object", "required": ["prompt"], "properties": props}

    content = {"application/json": {"schema": schema(reference)}}
    if upload is not None:
        content["multipart/form-data"] = {"schema": schema(upload)}
    return {"requestBody": {"required": True, "content": content}}


_EXTEND_BODY = _json_and_multipart(
    {"prompt": _PROMPT, "seconds": {"type": "string", "examples": ["4"], "description": "Seconds to add."},
     "extension_output": {"type": "string", "enum": ["whole", "new"]}},
    reference=_VIDEO_REF,
    upload={"type": "string", "format": "binary", "description": "An MP4 to continue."})
_REMIX_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["prompt"], "additionalProperties": False, "properties": {"prompt": _PROMPT}}}}}}
_EDIT_BODY = _json_and_multipart({"prompt": _PROMPT}, reference=_VIDEO_REF,
                                 upload={"type": "string", "format": "binary"})


def _required_prompt(fields: dict[str, Any]) -> str:
    prompt = fields.pop("prompt", None)
    if prompt is None:
        raise OpenAIError(400, "Missing required parameter: 'prompt'.", param="prompt",
                          code="missing_required_parameter")
    if not isinstance(prompt, str):
        raise OpenAIError(400, "Invalid type for 'prompt': expected a string.", param="prompt", code="invalid_type")
    return prompt


async def _read_extend_body(request: Request, max_bytes: int) -> tuple[dict[str, Any], bytes | None, str | None]:
    """Fields, the uploaded video and the referenced video id, from multipart (the SDK) or JSON."""
    content_type = request.headers.get("content-type", "")
    fields: dict[str, Any] = {}
    upload: bytes | None = None
    video_id: str | None = None
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_part_size=max_bytes + 1)
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key != "video":
                    raise OpenAIError(400, f"Unexpected file field '{key}'.", param=key, code="unknown_parameter")
                upload = await value.read(max_bytes + 1)
                check_size("video", upload, max_bytes)
            elif key in ("video[id]", "video.id"):
                video_id = form_text(key, value)
            elif key == "video":
                upload = decode_video_base64("video", form_text(key, value), max_bytes)
            else:
                fields[key] = form_text(key, value)
    elif content_type.startswith("application/json"):
        body = await json_object_body(request)
        video = body.pop("video", None)
        if isinstance(video, dict) and set(video) == {"id"} and isinstance(video["id"], str):
            video_id = video["id"]
        elif isinstance(video, str):
            upload = decode_video_base64("video", video, max_bytes)
        elif video is not None:
            raise OpenAIError(400, "'video' must be {\"id\": \"<video id>\"} or a base64 MP4.", param="video",
                              code="invalid_type")
        fields = body
    else:
        raise OpenAIError(400, "Send multipart/form-data or application/json.", code="invalid_content_type")
    if upload is None and not video_id:
        raise OpenAIError(400, "Missing required parameter: 'video'.", param="video", code="missing_required_parameter")
    return fields, upload, video_id


@router.post("/videos/extensions", summary="Extend a completed video (OpenAI's API)",
             responses=errors(404, 409, *SUBMIT_CODES), openapi_extra=_EXTEND_BODY)
async def extend_video(
    request: Request, state: StateDep, caller: CallerDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JSONResponse:
    settings = state.settings
    if settings.backend == "remote":
        raise OpenAIError(400, "Video extension runs on this server's own model; the remote backend does not "
                               "offer it.", code="unsupported_endpoint")
    fields, upload, video_id = await _read_extend_body(request, settings.max_upload_bytes)
    prompt = _required_prompt(fields)
    seconds, video_length = parse_seconds(fields.pop("seconds", None), settings.max_video_seconds)
    fields.pop("model", None)  # the SDK does not send one; any model name extends with F1
    check_knobs(fields)
    for name, decider in DECIDED_HERE.items():
        if name in fields:
            raise OpenAIError(400, f"'{name}' is decided by '{decider}'.", param=name, code="unknown_parameter")
    checked = await run_in_threadpool(input_video, state, caller.scope, upload, video_id, job_field="video.id")
    knobs = {**fields, "prompt": prompt, "video_length": video_length, "extend_job_id": video_id,
             "resolution": video_resolution(state, checked)}
    params = validate_video_params(state, knobs, has_end_image=False, has_input_video=True)
    job, _created = await run_in_threadpool(submit_video, state, params, {}, idempotency_key=idempotency_key,
                                            owner=caller.owner, video=checked.data)
    meta = await run_in_threadpool(openai_store.record, state.engine, job, model=EXTENSION_MODEL,
                                   seconds=seconds, size=f"{checked.width}x{checked.height}")
    return _answer(video_object(job, meta, settings), settings)


@router.post("/videos/{video_id}/remix", summary="Remix a video with a new prompt (OpenAI's API)",
             responses=errors(404, *SUBMIT_CODES), openapi_extra=_REMIX_BODY)
async def remix_video(
    video_id: str, request: Request, state: StateDep, caller: CallerDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JSONResponse:
    body = await json_object_body(request)
    prompt = _required_prompt(body)
    for name in body:
        raise OpenAIError(400, f"Unknown parameter: '{name}'. A remix takes only a prompt.", param=name,
                          code="unknown_parameter")
    meta, source = await run_in_threadpool(_load, state, video_id, caller)
    if source.type is not JobType.video:
        raise OpenAIError(400, "Only videos made by this server's own model can be remixed.", param="video_id",
                          code="invalid_value")
    job = await run_in_threadpool(_submit_remix, state, source, prompt, idempotency_key, caller.owner)
    remix = await run_in_threadpool(openai_store.record, state.engine, job, model=meta.model,
                                    seconds=meta.seconds, size=meta.size)
    return _answer(video_object(job, remix, state.settings), state.settings)


def _submit_remix(state: AppState, source: Job, prompt: str, idempotency_key: str | None, owner: str) -> Job:
    """A job with the source's params (its drawn seed fixed) and inputs, and the new prompt."""
    params = {**source.params, "prompt": prompt, "remixed_from": source.id}
    if source.seed is not None:  # the seed the source actually used: only the prompt changes
        params["seed"] = source.seed
    validated = VideoParams.model_validate(params)
    try:
        inputs = {name: state.storage.read_bytes(key) for name, key in source.inputs.items()}
    except (FileNotFoundError, KeyError):
        raise OpenAIError(404, f"The inputs of video '{source.id}' are gone; it cannot be remixed.",
                          param="video_id", code="video_expired") from None
    video = inputs.pop("video", None)
    job, _created = submit_video(state, validated, inputs, idempotency_key=idempotency_key, owner=owner, video=video)
    return job


@router.post("/videos/edits", summary="Not offered: video edits", responses=errors(400),
             openapi_extra=_EDIT_BODY)
def edit_video() -> JSONResponse:
    raise OpenAIError(400, "Video edits are not supported by this server. Use POST /v1/videos/extensions to "
                           "continue a video, or POST /v1/videos/{video_id}/remix to remake one with a new "
                           "prompt.", code="unsupported_endpoint")
