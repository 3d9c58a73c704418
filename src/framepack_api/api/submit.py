"""Turning an accepted request into a job: validate everything, then write files, then the row.

Shared by every dialect (native, OpenAI-compatible, training service) so that they queue jobs
the same way.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from framepack_api.api.deps import AppState
from framepack_api.api.image_submit import check_loras
from framepack_api.api.uploads import normalise_image
from framepack_api.disk import full_disk_error, is_disk_full, require_space
from framepack_api.errors import InvalidInput
from framepack_api.jobs.store import Job, NewJob
from framepack_api.limits import apply_server_limits, check_admission
from framepack_api.params import JobType, VideoParams
from framepack_api.params.keyframes import keyframe_upload_field

PRIORITY_RANGE = (-100, 100)


def validate_video_params(state: AppState, fields: dict[str, Any], *, has_end_image: bool,
                          has_input_video: bool = False, keyframe_images: int = 0) -> VideoParams:
    """Parse FramePack parameters; fill the server's default resolution; enforce server limits.
    ``keyframe_images``: how many keyframe images came with the request (one per keyframe time)."""
    fields = {k: v for k, v in fields.items() if v is not None and v != ""}
    try:
        params = VideoParams.model_validate({**fields, "has_end_image": has_end_image,
                                             "has_input_video": has_input_video})
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None
    settings = state.settings
    params = apply_server_limits(settings, params, default_resolution=state.default_resolution,
                                 keyframe_images=keyframe_images)
    check_loras(settings, params.lora_paths)  # a LoRA name outside LORA_DIR is refused here, not in the worker
    return params


def parse_priority(value: Any) -> int:
    if value is None or value == "":
        return 0
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise InvalidInput("priority", f"must be an integer, got {value!r}")
    try:
        priority = int(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInput("priority", f"must be an integer, got {value!r}") from None
    low, high = PRIORITY_RANGE
    if not low <= priority <= high:
        raise InvalidInput("priority", f"must be between {low} and {high}, got {priority}")
    return priority


def submit_video(state: AppState, params: VideoParams, images: dict[str, bytes], *, priority: int = 0,
                 idempotency_key: str | None = None, webhook_url: str | None = None,
                 webhook_events: list[str] | None = None, owner: str = "",
                 video: bytes | None = None) -> tuple[Job, bool]:
    """images: raw upload bytes by input name ("image", optional "end_image", "keyframe_0"...), size-checked.
    video: an extension job's input MP4, already checked (api/video_input.py); stored as is.
    owner: the calling credential's key id (auth.Caller.owner)."""
    store, storage = state.store, state.storage
    request_hash = _request_hash(params.model_dump(), {**images, **({"video": video} if video else {})}, priority)
    if idempotency_key:
        existing = store.replay(idempotency_key, request_hash, owner)
        if existing is not None:
            return existing, False
    check_admission(store, state.settings, owner)
    # Decode every image before writing any, so that a bad end_image leaves no orphan image.
    pngs = {name: normalise_image(keyframe_upload_field(name), data, state.settings.max_image_pixels)
            for name, data in images.items()}
    require_space(storage.root, state.settings.min_free_disk_mb)
    job_id = str(uuid.uuid4())
    try:
        inputs = {name: storage.write_input(job_id, f"{name}.png", png) for name, png in pngs.items()}
        if video is not None:
            inputs["video"] = storage.write_input(job_id, "video.mp4", video)
        job, created = store.submit(NewJob(
            type=JobType.video, params=params.model_dump(), inputs=inputs, priority=priority,
            idempotency_key=idempotency_key, request_hash=request_hash, id=job_id,
            webhook_url=webhook_url, webhook_events=webhook_events, owner=owner,
        ))
    except BaseException as exc:
        storage.remove_job(job_id)
        if is_disk_full(exc):
            raise full_disk_error(exc) from exc
        raise
    if not created:  # lost an idempotency race: the files written for this request are not needed
        storage.remove_job(job_id)
    return job, created


def _request_hash(params: dict[str, Any], images: dict[str, bytes], priority: int) -> str:
    digest = hashlib.sha256(json.dumps({"params": params, "priority": priority}, sort_keys=True).encode())
    for name in sorted(images):
        digest.update(name.encode())
        digest.update(hashlib.sha256(images[name]).digest())
    return digest.hexdigest()
