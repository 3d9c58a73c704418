"""A job's memory, estimated from its frames × size before it is queued.

A job too big for its machine does not fail politely: the kernel kills the worker (or the GPU
runs out) and the job is retried into the same death. What is estimated is what grows with the
job, on top of the loaded model:

- video: every decoded frame is held at once, as the pipeline's float32 output, a float32 array
  and the uint8 RGB frames handed to the encoder: 3 channels × (4 + 4 + 1) bytes per pixel;
- image jobs: the VAE decodes at full resolution, about three live float32 tensors of 128
  channels per pixel (1.5 kB), for each image decoded together (``batch_size``).

The figures are deliberately round; the budget (``JOB_MEMORY_BUDGET_GB``) is what an operator
tunes to the machine, after watching a few real jobs.
"""

from __future__ import annotations

from framepack_api.errors import InvalidInput
from framepack_api.params import ImageBatchParams, ImageParams, ImageTransferParams, VideoParams
from framepack_api.params.image import OneFrameFields
from framepack_api.params.video import frame_count
from framepack_api.settings import Settings

GB = 1024**3
VIDEO_BYTES_PER_PIXEL = 3 * (4 + 4 + 1)
IMAGE_BYTES_PER_PIXEL = 3 * 128 * 4
BUCKET_SIDE = 640  # an image job without a size gets the input's bucket at FramePack's 640 resolution


def video_job_bytes(params: VideoParams, resolution: int) -> tuple[int, str]:
    """(bytes, how) for a video job; buckets keep about resolution² pixels whatever the aspect."""
    frames = frame_count(params.sections(), params.latent_window_size)
    return frames * resolution * resolution * VIDEO_BYTES_PER_PIXEL, f"{frames} frames at about {resolution}²"


def image_job_bytes(params: OneFrameFields) -> tuple[int, str]:
    together = 1
    if isinstance(params, ImageBatchParams):
        together = min(params.batch_size, len(params.prompts))
    elif isinstance(params, ImageParams) and (targets := params.target_indices()) is not None:
        together = min(params.rope_batch_size, len(targets))
    width, height = params.width, params.height
    if isinstance(params, ImageTransferParams) and (width is None or height is None):
        width = height = BUCKET_SIDE
    return together * width * height * IMAGE_BYTES_PER_PIXEL, f"{together} image(s) of {width}×{height}"


def check_budget(settings: Settings, needed: int, how: str, field: str) -> None:
    """Refuse (422 naming ``field``) what cannot fit the configured budget; 0 means no budget."""
    budget = settings.job_memory_budget_gb
    if budget <= 0 or needed <= budget * GB:
        return
    raise InvalidInput(field, f"this job needs about {needed / GB:.1f} GB of memory ({how}), more than this "
                              f"server's JOB_MEMORY_BUDGET_GB limit of {budget:g} GB; ask for less")


def check_video(settings: Settings, params: VideoParams, resolution: int) -> None:
    needed, how = video_job_bytes(params, resolution)
    check_budget(settings, needed, how, "video_length")


def check_image(settings: Settings, params: OneFrameFields) -> None:
    needed, how = image_job_bytes(params)
    field = "width"
    if isinstance(params, ImageBatchParams) and params.batch_size > 1 and len(params.prompts) > 1:
        field = "batch_size"
    elif isinstance(params, ImageParams) and params.rope_batch is not None and params.rope_batch_size > 1:
        field = "rope_batch_size"
    check_budget(settings, needed, how, field)
