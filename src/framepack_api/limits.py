"""The server's own limits on a video job, on top of the parameter model's ranges.

One function, used by every way in (native HTTP, OpenAI dialect, serverless), so that a job that
one entry point refuses, every entry point refuses the same way.
"""

from __future__ import annotations

from framepack_api.errors import InvalidInput
from framepack_api.job_memory import check_video
from framepack_api.params import VideoParams
from framepack_api.settings import Settings


def apply_server_limits(settings: Settings, params: VideoParams, *, default_resolution: int,
                        end_image_field: str = "end_image") -> VideoParams:
    """Fill the default resolution, then refuse what this server will not make."""
    if params.resolution is None:
        params = params.model_copy(update={"resolution": default_resolution})
    if params.resolution is not None and params.resolution > settings.max_resolution:
        raise InvalidInput("resolution", f"{params.resolution} is above this server's "
                                         f"MAX_RESOLUTION of {settings.max_resolution}")
    if params.video_length > settings.max_video_seconds:
        raise InvalidInput("video_length", f"{params.video_length} s is above this server's limit of "
                                           f"{settings.max_video_seconds} s")
    check_video(settings, params, params.resolution or default_resolution)
    if params.has_end_image and params.sampling_mode == "forward":
        raise InvalidInput(end_image_field, "an end image needs sampling_mode 'reverse'; "
                                            "forward (F1) sampling cannot take one")
    return params
