"""The input video of an extension job: an uploaded MP4, or a finished video job of the same owner.

Everything is checked before anything is written: the upload must decode (every frame), fit the
pixel limit of images and the server's MAX_VIDEO_SECONDS at 30 fps, and have at least
``MIN_FRAMES``; a source job must be the caller's own (another owner's is a 404, as everywhere),
a video job, completed, and still have its files.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import av

from framepack_api.api.deps import AppState
from framepack_api.api.uploads import check_size, decode_base64
from framepack_api.api.video_requests import local_bucket
from framepack_api.errors import Conflict, FilesExpired, InvalidInput
from framepack_api.hardware import resolution_cap
from framepack_api.jobs.schema import JobStatus
from framepack_api.params import JobType

FPS = 30
# 1 + 4 frames: one latent of motion after the first frame's, the least the VAE encodes as video.
MIN_FRAMES = 5


@dataclass(frozen=True)
class CheckedVideo:
    data: bytes
    frames: int
    width: int
    height: int


def check_input_video(field: str, data: bytes, *, max_pixels: int, max_seconds: float) -> CheckedVideo:
    """Decode the whole upload; return what it holds, or raise InvalidInput naming ``field``."""
    max_frames = int(max_seconds * FPS)
    frames = 0
    try:
        container: Any = av.open(io.BytesIO(data))
    except (av.error.FFmpegError, ValueError) as exc:  # not a container FFmpeg knows
        raise InvalidInput(field, f"not a decodable video (MP4, WebM, ...): {exc}") from None
    try:
        if not container.streams.video:
            raise InvalidInput(field, "the file has no video stream")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > max_pixels:
            raise InvalidInput(field, f"video is {width}x{height} = {width * height} pixels; "
                                      f"the limit is {max_pixels}", too_large=True)
        for _frame in container.decode(stream):
            frames += 1
            if frames > max_frames:
                raise InvalidInput(field, f"video is longer than this server's limit of {max_seconds:g} s "
                                          f"({max_frames} frames)", too_large=True)
    except InvalidInput:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise InvalidInput(field, f"video is corrupt or truncated after {frames} frames ({exc})") from None
    finally:
        container.close()
    if frames < MIN_FRAMES:
        raise InvalidInput(field, f"video has {frames} frames; an extension needs at least {MIN_FRAMES}")
    return CheckedVideo(data, frames, width, height)


def source_video(state: AppState, job_id: str, scope: str | None, field: str) -> bytes:
    """The MP4 of the caller's completed video job ``job_id`` (JobNotFound when not theirs)."""
    job = state.store.get(job_id, scope)
    if job.type is not JobType.video:
        raise InvalidInput(field, f"job {job_id} is a {job.type.value} job; only a video can be extended")
    if job.status is not JobStatus.completed or not job.result or "video" not in job.result:
        raise Conflict(f"{field}: job {job_id} is {job.status.value}; only a completed video can be extended")
    if job.files_expired_at is not None:
        raise FilesExpired(job_id)
    return state.storage.read_bytes(job.result["video"])


def decode_video_base64(field: str, value: str, max_bytes: int) -> bytes:
    """A base64 video in a JSON body; a ``data:video/...;base64,`` prefix is allowed."""
    text = value.strip()
    if text.lower().startswith("data:"):
        _, _, text = text.partition(",")
    data = decode_base64(field, text, max_bytes)
    check_size(field, data, max_bytes)
    return data


def input_video(state: AppState, scope: str | None, upload: bytes | None, job_id: str | None, *,
                upload_field: str = "video", job_field: str = "extend_job_id") -> CheckedVideo:
    """The checked MP4 an extension job continues: the upload, or the caller's finished job's video.
    Blocking (decoding, files, database): run in a thread."""
    if upload is not None and job_id:
        raise InvalidInput(job_field, f"give either a `{upload_field}` upload or `{job_field}`, not both")
    if upload is not None:
        data, field = upload, upload_field
    elif job_id:
        data, field = source_video(state, job_id, scope, job_field), job_field
    else:
        raise InvalidInput(upload_field, f"required: a video upload or `{job_field}`")
    settings = state.settings
    return check_input_video(field, data, max_pixels=settings.max_image_pixels,
                             max_seconds=settings.max_video_seconds)


def video_resolution(state: AppState, video: CheckedVideo) -> int:
    """The bucket resolution of the input video's own pixel count (within this server's limits), for a
    request that names none: an extension keeps the video's size rather than the server's default."""
    cap = min(resolution_cap(state.settings), state.settings.max_resolution)
    return local_bucket(video.width, video.height, cap)[0]
