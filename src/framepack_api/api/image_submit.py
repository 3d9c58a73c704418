"""Image job requests (seed 002): JSON bodies → checked params and normalised input files → a job row.

Like video submissions: everything is decoded and checked before anything is written, and files are
written before the row, so a refused request leaves nothing behind and a row never lacks its inputs.
"""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import uuid
from typing import Any

from PIL import Image, ImageOps
from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from framepack_api.api.deps import AppState
from framepack_api.api.uploads import check_size, decode_base64, normalise_image
from framepack_api.disk import full_disk_error, is_disk_full, require_space
from framepack_api.errors import InvalidInput
from framepack_api.hardware import capped_image_size
from framepack_api.job_memory import check_image
from framepack_api.jobs.store import Job, NewJob
from framepack_api.limits import check_admission
from framepack_api.lora_files import LoraError, resolve_lora_path
from framepack_api.params import ImageBatchParams, ImageParams, ImageTransferParams, JobType
from framepack_api.params.fields import StrictInt
from framepack_api.params.image import OneFrameFields, round_side
from framepack_api.settings import Settings

BASE64_IMAGE = "base64 PNG/JPEG/WebP (a data: URL prefix is allowed)"


class _Queueing(BaseModel):
    priority: StrictInt = Field(0, ge=-100, le=100, description="Higher runs first; image jobs get a boost, "
                                                          "and waiting jobs age (see docs/IMAGES.md).")


# Set by the server from the images sent. Seed 002's clients send them, so a request may carry them
# (they are dropped), but the request schema does not list them: a client has nothing to set there.
ServerSet = SkipJsonSchema[bool]


class GenerateImageRequest(ImageParams, _Queueing):
    has_input_image: ServerSet = False
    input_image: str | None = Field(None, description=f"Optional start image, {BASE64_IMAGE}. Without it the "
                                                      "image grows from a neutral grey canvas (text to image).")


class BatchImagesRequest(ImageBatchParams, _Queueing):
    has_input_image: ServerSet = False
    input_image: str | None = Field(None, description=f"Optional start image for every prompt, {BASE64_IMAGE}. "
                                                      "Without it each image grows from a neutral grey canvas.")


class TransferImageRequest(ImageTransferParams, _Queueing):
    has_source_mask: ServerSet = False
    has_target_mask: ServerSet = False
    target_image: str = Field(description=f"The subject, kept at clean index 0; {BASE64_IMAGE}.")
    source_image: str = Field(description=f"The reference whose clothing/style is carried over; {BASE64_IMAGE}.")
    target_mask: str | None = Field(None, description="Optional grayscale mask of the target: black = ignore. "
                                                      "Default: the target image's alpha channel, if it has one.")
    source_mask: str | None = Field(None, description="Optional grayscale mask of the reference: black = ignore. "
                                                      "Default: the source image's alpha channel, if it has one.")


SERVER_SET = {"has_input_image", "has_source_mask", "has_target_mask"}
IMAGE_FIELDS = ("input_image", "target_image", "source_image", "target_mask", "source_mask")


def check_loras(settings: Settings, lora_paths: list[str]) -> None:
    """Refuse (422) any LoRA name that is not a file inside LORA_DIR, before a job exists."""
    if len(set(lora_paths)) != len(lora_paths):
        raise InvalidInput("lora_paths", "the same LoRA is listed twice")
    for name in lora_paths:
        try:
            resolve_lora_path(settings.lora_dir, name)
        except LoraError as exc:
            raise InvalidInput("lora_paths", str(exc)) from None


def _sized(settings: Settings, fields: dict[str, Any]) -> dict[str, Any]:
    """Round width/height to the model's multiple of 16; refuse what is above the server's limit."""
    for side in ("width", "height"):
        value = fields.get(side)
        if value is None:
            continue
        if value > settings.image_max_side:
            raise InvalidInput(side, f"{value} is above this server's IMAGE_MAX_SIDE of {settings.image_max_side}")
        fields[side] = round_side(value, settings.image_max_side)
    return fields


def read_images(settings: Settings, body: BaseModel) -> dict[str, bytes]:
    """The request's base64 images as bytes (size-checked), by field name."""
    images: dict[str, bytes] = {}
    for name in IMAGE_FIELDS:
        value = getattr(body, name, None)
        if value:
            data = decode_base64(name, value, settings.max_upload_bytes)
            check_size(name, data, settings.max_upload_bytes)
            images[name] = data
    return images


ALPHA_MASKS = {"target_image": "target_mask", "source_image": "source_mask"}


def alpha_mask(field: str, data: bytes, max_pixels: int) -> bytes | None:
    """The image's alpha channel as a grayscale PNG (opaque = keep, transparent = ignore), or None.

    musubi-tuner's convention for one-frame control images: an RGBA image masks its own latent.
    """
    normalise_image(field, data, max_pixels)  # refuses undecodable or oversized images with a 4xx first
    with Image.open(io.BytesIO(data)) as img:
        has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
        if not has_alpha:
            return None
        # The same orientation as the image itself gets in normalise_image.
        alpha = ImageOps.exif_transpose(img).convert("RGBA").getchannel("A")
    out = io.BytesIO()
    alpha.save(out, format="PNG")
    return out.getvalue()


def add_alpha_masks(settings: Settings, images: dict[str, bytes]) -> None:
    """Fill a transfer's missing masks from its images' alpha channels; explicit masks win."""
    for image_field, mask_field in ALPHA_MASKS.items():
        if image_field in images and mask_field not in images:
            mask = alpha_mask(image_field, images[image_field], settings.max_image_pixels)
            if mask is not None:
                images[mask_field] = mask


def image_params(state: AppState, body: BaseModel, images: dict[str, bytes]) -> OneFrameFields:
    """The job's params from a request: server-set flags filled, sizes rounded, LoRAs and seeds checked."""
    settings = state.settings
    fields = body.model_dump(exclude={"priority", *IMAGE_FIELDS, *SERVER_SET})
    params: OneFrameFields
    if isinstance(body, GenerateImageRequest):
        params = ImageParams.model_validate({**_sized(settings, fields), "has_input_image": "input_image" in images})
    elif isinstance(body, BatchImagesRequest):
        count = len(body.prompts)
        given = [*body.seeds, *([-1] * (count - len(body.seeds)))]
        # Missing seeds are drawn now, so /status shows every image's seed before the job runs.
        fields["seeds"] = [secrets.randbelow(2**32) if s == -1 else s for s in given]
        params = ImageBatchParams.model_validate({**_sized(settings, fields),
                                                  "has_input_image": "input_image" in images})
    elif isinstance(body, TransferImageRequest):
        if (body.width is None) != (body.height is None):
            raise InvalidInput("width" if body.width is None else "height", "give both width and height, or neither")
        add_alpha_masks(settings, images)
        params = ImageTransferParams.model_validate({
            **_sized(settings, fields), "has_source_mask": "source_mask" in images,
            "has_target_mask": "target_mask" in images})
    else:
        raise TypeError(f"not an image request: {type(body).__name__}")
    if params.width is not None and params.height is not None:
        # On the tiny model, scaled down to its limit (aspect kept); the job's params show the size made.
        width, height = capped_image_size(settings, params.width, params.height)
        params = params.model_copy(update={"width": width, "height": height})
    check_loras(settings, params.lora_paths)
    check_image(settings, params)
    return params


def submit_image_job(state: AppState, job_type: JobType, params: OneFrameFields, images: dict[str, bytes],
                     *, priority: int, request_hash: str, idempotency_key: str | None = None,
                     owner: str = "") -> tuple[Job, bool]:
    """Normalise every image, write them, then insert the row. Returns (job, created)."""
    store, storage = state.store, state.storage
    if idempotency_key:
        existing = store.replay(idempotency_key, request_hash, owner)
        if existing is not None:
            return existing, False
    check_admission(store, state.settings, owner)
    pngs = {name: normalise_image(name, data, state.settings.max_image_pixels) for name, data in images.items()}
    require_space(storage.root, state.settings.min_free_disk_mb)
    job_id = str(uuid.uuid4())
    try:
        inputs = {name: storage.write_input(job_id, f"{name}.png", png) for name, png in pngs.items()}
        job, created = store.submit(NewJob(
            type=job_type, params=params.model_dump(mode="json"), inputs=inputs, priority=priority,
            idempotency_key=idempotency_key, request_hash=request_hash, id=job_id, owner=owner,
        ))
    except BaseException as exc:
        storage.remove_job(job_id)
        if is_disk_full(exc):
            raise full_disk_error(exc) from exc
        raise
    if not created:  # lost an idempotency race: this request's files are not needed
        storage.remove_job(job_id)
    return job, created


def request_hash(job_type: JobType, body: BaseModel, images: dict[str, bytes]) -> str:
    """Identity of the client's request (before seeds are drawn), for Idempotency-Key reuse checks."""
    fields = body.model_dump(mode="json", exclude={*IMAGE_FIELDS, *SERVER_SET})  # server-set flags are dropped
    digest = hashlib.sha256(json.dumps({"type": job_type.value, **fields}, sort_keys=True).encode())
    for name in sorted(images):
        digest.update(name.encode())
        digest.update(hashlib.sha256(images[name]).digest())
    return digest.hexdigest()
