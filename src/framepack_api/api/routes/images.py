"""The image endpoints of seed 002, their results, and the LoRA list.

``POST /api/generate-image``, ``/api/batch-images``, ``/api/transfer-image``
queue jobs (200 + job id, as FramePack-FastAPI answered);
``GET /result/{job_id}`` (in native.py, via ``image_file``) gives the PNG or a batch's ZIP,
``GET /result/{job_id}/{index}`` one image of a batch (of a RoPE batch: the index-th target index),
``GET /api/image/{job_id}`` the same as /result.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from framepack_api.api.auth import Caller, CallerDep
from framepack_api.api.contract import SUBMIT_CODES, errors
from framepack_api.api.deps import AppState, StateDep
from framepack_api.api.downloads import stored_file
from framepack_api.api.image_submit import (
    BatchImagesRequest,
    GenerateImageRequest,
    TransferImageRequest,
    image_params,
    read_images,
    request_hash,
    submit_image_job,
)
from framepack_api.api.views import JobAccepted, accepted, require_files
from framepack_api.errors import JobNotFound, JobNotReady
from framepack_api.jobs.schema import JobStatus
from framepack_api.jobs.store import Job
from framepack_api.lora_files import list_loras
from framepack_api.params import IMAGE_JOB_TYPES, JobType

router = APIRouter(tags=["image jobs"])

IdempotencyKey = Annotated[str | None, Header(max_length=255, description="Same key, same job: retries are safe.")]
ERRORS = errors(*SUBMIT_CODES)


async def _queue(state: StateDep, caller: Caller, job_type: JobType, body: BaseModel,
                 idempotency_key: str | None) -> JSONResponse:
    # Decoding images (Pillow) and writing files are blocking work: off the event loop.
    job, created = await run_in_threadpool(_submit, state, job_type, body, idempotency_key, caller.owner)
    return JSONResponse(accepted(job, created), headers={"Location": f"/status/{job.id}"})


def _submit(state: AppState, job_type: JobType, body: BaseModel, idempotency_key: str | None,
            owner: str) -> tuple[Job, bool]:
    images = read_images(state.settings, body)
    params = image_params(state, body, images)
    return submit_image_job(state, job_type, params, images, priority=getattr(body, "priority", 0),
                            request_hash=request_hash(job_type, body, images), idempotency_key=idempotency_key,
                            owner=owner)


@router.post("/api/generate-image", status_code=200, response_model=JobAccepted, responses=ERRORS,
             summary="Queue one image (one-frame inference; text to image without input_image)")
async def generate_image(body: GenerateImageRequest, state: StateDep, caller: CallerDep,
                         idempotency_key: IdempotencyKey = None) -> JSONResponse:
    return await _queue(state, caller, JobType.image, body, idempotency_key)


@router.post("/api/batch-images", status_code=200, response_model=JobAccepted, responses=ERRORS,
             summary="Queue one image per prompt, batch_size images per forward pass")
async def batch_images(body: BatchImagesRequest, state: StateDep, caller: CallerDep,
                       idempotency_key: IdempotencyKey = None) -> JSONResponse:
    return await _queue(state, caller, JobType.image_batch, body, idempotency_key)


@router.post("/api/transfer-image", status_code=200, response_model=JobAccepted, responses=ERRORS,
             summary="Queue a kisekaeichi transfer: the reference's clothing/style onto the subject")
async def transfer_image(body: TransferImageRequest, state: StateDep, caller: CallerDep,
                         idempotency_key: IdempotencyKey = None) -> JSONResponse:
    return await _queue(state, caller, JobType.image_transfer, body, idempotency_key)


def image_file(state: StateDep, request: Request, job: Job, index: int | None) -> Response:
    """A completed image job's PNG (``index`` None or 0), a batch's ZIP (None) or one batch image."""
    if job.status is not JobStatus.completed or not job.result:
        raise JobNotReady(job.id, job.status.value)
    require_files(job)
    # A batch, and a single-image job with rope_batch, store image_000... and a ZIP of them all.
    if job.type is JobType.image_batch or "zip" in job.result:
        key = "zip" if index is None else f"image_{index:03d}"
    else:
        key = "image" if index in (None, 0) else ""
    if key not in job.result:
        raise JobNotFound(f"{job.id}/{index}")
    if key == "zip":
        return stored_file(state, request, job.result[key], "application/zip", filename=f"{job.id}.zip")
    suffix = "" if index is None else f"-{index}"
    return stored_file(state, request, job.result[key], "image/png", filename=f"{job.id}{suffix}.png")


def _image_job(state: StateDep, job_id: str, caller: Caller) -> Job:
    job = state.store.get(job_id, caller.scope)
    if job.type not in IMAGE_JOB_TYPES:
        raise JobNotFound(job_id)  # not an image job
    return job


@router.get("/result/{job_id}/{index}", summary="One image of a finished image job (0-based)",
            responses={200: {"content": {"image/png": {}}}, **errors(404, 409, 410)})
def result_image(job_id: str, index: int, request: Request, state: StateDep, caller: CallerDep) -> Response:
    return image_file(state, request, _image_job(state, job_id, caller), index)


@router.get("/api/image/{job_id}", summary="A finished image job's PNG (a batch: its ZIP, or ?index=N)",
            responses={200: {"content": {"image/png": {}, "application/zip": {}}}, **errors(404, 409, 410)})
def api_image(job_id: str, request: Request, state: StateDep, caller: CallerDep,
              index: Annotated[int | None, Query(ge=0, description="One image of a batch")] = None) -> Response:
    return image_file(state, request, _image_job(state, job_id, caller), index)


@router.get("/loras", summary="LoRA files jobs may name in lora_paths", tags=["models"])
def loras(state: StateDep) -> dict[str, Any]:
    lora_dir = state.settings.lora_dir
    return {"lora_dir_configured": lora_dir is not None, "loras": list_loras(lora_dir)}
