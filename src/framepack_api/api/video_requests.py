"""An OpenAI-style video request (model, seconds, size, optional reference image) turned into a job.

Shared by /v1/videos and the training-video service. Local jobs become FramePack ``video`` jobs
through ``api/submit.py`` like every other dialect; with the remote backend they become
``remote_video`` jobs that a worker forwards to another OpenAI-compatible server.

Sizing for local jobs: ``size`` WxH asks for an aspect ratio and a pixel count. The resolution is
sqrt(W·H) snapped to 16 and capped at the server's MAX_RESOLUTION, and the job makes the FramePack
bucket of that resolution nearest to W:H. The start image is centre-cropped to that bucket first,
so the aspect of ``size`` wins over the aspect of the uploaded image. Without a reference image the
start is a flat mid-grey frame (text to video from a neutral start).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from framepack_api.api.deps import AppState
from framepack_api.api.openai_errors import OpenAIError
from framepack_api.api.submit import submit_video, validate_video_params
from framepack_api.api.uploads import normalise_image
from framepack_api.disk import full_disk_error, is_disk_full, require_space
from framepack_api.hardware import resolution_cap
from framepack_api.jobs.store import Job, NewJob
from framepack_api.limits import check_admission
from framepack_api.media.images import find_nearest_bucket, resize_and_center_crop
from framepack_api.params import JobType, RemoteVideoParams, SamplingMode
from framepack_api.settings import Settings

LOCAL_MODELS: dict[str, SamplingMode] = {"framepack": "reverse", "framepack-f1": "forward"}
# OpenAI's model names (the SDK's VideoModel literals), so that a client moving from Sora runs with
# its model argument unchanged. Both tiers become FramePack's default (anti-drifting) sampling: "pro"
# is a quality tier at OpenAI, not a different way of sampling, and F1 is chosen by name only.
SORA_ALIASES: dict[str, str] = {name: "framepack" for name in (
    "sora-2", "sora-2-pro", "sora-2-2025-10-06", "sora-2-pro-2025-10-06", "sora-2-2025-12-08")}
DEFAULT_SECONDS = "4"
DEFAULT_SIZE = "720x1280"  # OpenAI's default
MAX_SIDE = 8192
NEUTRAL_GREY = (128, 128, 128)
MIN_RESOLUTION = 64

# FramePack fields that model, seconds, size and input_reference decide; naming them is an error.
DECIDED_BY: dict[str, str] = {"sampling_mode": "model", "video_length": "seconds", "resolution": "size",
                              "image": "input_reference", "end_image": "input_reference",
                              "has_end_image": "input_reference"}

_SIZE = re.compile(r"^\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*$")


@dataclass(frozen=True)
class VideoRequest:
    prompt: str
    model: str
    seconds: str  # normalised, e.g. "4" or "2.5"
    video_length: float
    width: int  # as asked
    height: int
    knobs: dict[str, Any] = field(default_factory=dict)  # model-specific extra fields
    image: bytes | None = None  # the reference image as uploaded


@dataclass(frozen=True)
class Submitted:
    job: Job
    created: bool
    size: str  # WxH that will be made (local), or that was asked (remote)


def available_models(settings: Settings, backend: str) -> list[str]:
    return [settings.remote_model] if backend == "remote" else list(LOCAL_MODELS)


def parse_model(settings: Settings, backend: str, value: Any) -> str:
    """The model the job runs. Locally, OpenAI's names are aliases of ``framepack``; a remote backend
    gets names as they are, since the server behind it may be OpenAI's own."""
    models = available_models(settings, backend)
    if value is None or value == "":
        return models[0]
    if backend != "remote" and isinstance(value, str) and value in SORA_ALIASES:
        return SORA_ALIASES[value]
    if value not in models:
        raise OpenAIError(400, f"Model '{value}' is not available on this server. "
                               f"Available models: {', '.join(models)}.", param="model", code="invalid_model")
    return str(value)


def parse_seconds(value: Any, max_seconds: float) -> tuple[str, float]:
    if value is None or value == "":
        value = DEFAULT_SECONDS
    try:
        seconds = float(str(value).strip())
    except ValueError:
        raise OpenAIError(400, f"Invalid value for 'seconds': {value!r} is not a number of seconds.",
                          param="seconds", code="invalid_value") from None
    if not math.isfinite(seconds) or not 0 < seconds <= max_seconds:
        raise OpenAIError(400, f"Invalid value for 'seconds': must be above 0 and at most {max_seconds:g}.",
                          param="seconds", code="invalid_value")
    return f"{seconds:g}", seconds


def parse_size(value: Any) -> tuple[int, int]:
    if value is None or value == "":
        value = DEFAULT_SIZE
    match = _SIZE.match(str(value))
    if not match:
        raise OpenAIError(400, f"Invalid value for 'size': {value!r}; expected WIDTHxHEIGHT, e.g. 1280x720.",
                          param="size", code="invalid_value")
    width, height = int(match[1]), int(match[2])
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise OpenAIError(400, f"Invalid value for 'size': each side must be 1..{MAX_SIDE}.",
                          param="size", code="invalid_value")
    return width, height


def check_knobs(knobs: dict[str, Any]) -> None:
    for name in knobs:
        if name in DECIDED_BY:
            raise OpenAIError(400, f"'{name}' is decided by '{DECIDED_BY[name]}'; set that instead.",
                              param=name, code="unknown_parameter")


def local_bucket(width: int, height: int, max_resolution: int) -> tuple[int, int, int]:
    """(resolution, bucket width, bucket height) that a local job asked for width×height makes."""
    resolution = round(math.sqrt(width * height) / 16) * 16
    resolution = max(MIN_RESOLUTION, min(resolution, max_resolution))
    bucket_h, bucket_w = find_nearest_bucket(height, width, resolution)
    return resolution, bucket_w, bucket_h


def start_image(image: bytes | None, width: int, height: int, max_pixels: int) -> bytes:
    """The start frame as PNG bytes at exactly width×height: the reference cropped, or neutral grey."""
    if image is None:
        img = Image.new("RGB", (width, height), NEUTRAL_GREY)
    else:
        with Image.open(io.BytesIO(normalise_image("input_reference", image, max_pixels))) as decoded:
            img = resize_and_center_crop(decoded.convert("RGB"), width, height)
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def submit_request(state: AppState, req: VideoRequest, backend: str, *,
                   idempotency_key: str | None = None, owner: str = "") -> Submitted:
    """Validate everything, then queue the job. Blocking (files and database): run in a thread."""
    check_knobs(req.knobs)
    if backend == "remote":
        remote = RemoteVideoParams(prompt=req.prompt, model=req.model, seconds=req.seconds,
                                   size=f"{req.width}x{req.height}", extra=req.knobs)
        job, created = submit_remote(state, remote, req.image, idempotency_key=idempotency_key, owner=owner)
        return Submitted(job, created, remote.size)
    settings = state.settings
    # On the tiny model the cap is its own limit: frame_size in the answer says what is made.
    resolution, bucket_w, bucket_h = local_bucket(req.width, req.height, resolution_cap(settings))
    fields = {**req.knobs, "prompt": req.prompt, "video_length": req.video_length,
              "resolution": resolution, "sampling_mode": LOCAL_MODELS[req.model]}
    params = validate_video_params(state, fields, has_end_image=False)
    png = start_image(req.image, bucket_w, bucket_h, settings.max_image_pixels)
    job, created = submit_video(state, params, {"image": png}, idempotency_key=idempotency_key, owner=owner)
    return Submitted(job, created, f"{bucket_w}x{bucket_h}")


def submit_remote(state: AppState, params: RemoteVideoParams, image: bytes | None, *,
                  idempotency_key: str | None = None, owner: str = "") -> tuple[Job, bool]:
    """Queue a ``remote_video`` job. Its ``remote`` input file is where the worker keeps the remote
    video's id, so that a retried attempt resumes that video instead of creating a second one."""
    store, storage = state.store, state.storage
    png = normalise_image("input_reference", image, state.settings.max_image_pixels) if image else None
    digest = hashlib.sha256(json.dumps(params.model_dump(), sort_keys=True).encode())
    digest.update(hashlib.sha256(image or b"").digest())
    request_hash = digest.hexdigest()
    if idempotency_key:
        existing = store.replay(idempotency_key, request_hash, owner)
        if existing is not None:
            return existing, False
    require_space(storage.root, state.settings.min_free_disk_mb)
    check_admission(store, state.settings, owner)
    job_id = str(uuid.uuid4())
    try:
        state_file = json.dumps({"job_id": job_id}).encode()
        inputs = {"remote": storage.write_input(job_id, "remote.json", state_file)}
        if png is not None:
            inputs["image"] = storage.write_input(job_id, "image.png", png)
        job, created = store.submit(NewJob(
            type=JobType.remote_video, params=params.model_dump(), inputs=inputs,
            idempotency_key=idempotency_key, request_hash=request_hash, id=job_id, owner=owner,
        ))
    except BaseException as exc:
        storage.remove_job(job_id)
        if is_disk_full(exc):
            raise full_disk_error(exc) from exc
        raise
    if not created:
        storage.remove_job(job_id)
    return job, created
