"""What a job asks for: job types and one parameter model per type.

A package of its own so that the API, the job store, the backends and the UI share these models
while the backends know nothing of SQL or HTTP.
"""

from __future__ import annotations

import enum

from pydantic import BaseModel

from framepack_api.params.image import ImageBatchParams, ImageParams, ImageTransferParams, LoraFields
from framepack_api.params.video import (
    ExtensionOutput,
    RemoteVideoParams,
    SamplingMode,
    VideoParams,
    frame_count,
    total_sections,
)

__all__ = [
    "IMAGE_JOB_TYPES", "PARAMS_BY_TYPE", "ExtensionOutput", "ImageBatchParams", "ImageParams",
    "ImageTransferParams", "JobType", "LoraFields", "RemoteVideoParams", "SamplingMode", "VideoParams",
    "frame_count", "total_sections",
]


class JobType(str, enum.Enum):
    video = "video"
    remote_video = "remote_video"  # forwarded to an OpenAI-compatible server (issue 5)
    image = "image"  # one-frame inference, seed 002 (issue 4)
    image_batch = "image_batch"
    image_transfer = "image_transfer"  # kisekaeichi


IMAGE_JOB_TYPES = frozenset({JobType.image, JobType.image_batch, JobType.image_transfer})


PARAMS_BY_TYPE: dict[JobType, type[BaseModel]] = {JobType.video: VideoParams,
                                                  JobType.remote_video: RemoteVideoParams,
                                                  JobType.image: ImageParams, JobType.image_batch: ImageBatchParams,
                                                  JobType.image_transfer: ImageTransferParams}
