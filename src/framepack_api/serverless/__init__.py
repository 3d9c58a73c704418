"""FramePack image-to-video as a serverless function (seed 003): JSON in, JSON out, MP4 as base64.

AWS Lambda: ``framepack_api.serverless.lambda_handler``. RunPod-style workers:
``framepack_api.serverless.handler`` or ``python -m framepack_api.serverless --runpod``. See
docs/SERVERLESS.md.
"""

from framepack_api.serverless.events import Shape, VideoRequest, detect_shape, parse_request
from framepack_api.serverless.handlers import (
    InternalError,
    InvalidInputError,
    InvocationFailed,
    ResponseTooLargeError,
    ServerlessConfig,
    UploadFailedError,
    generate_video_sync,
    get_models,
    handler,
    invoke,
    lambda_handler,
    model_loads,
    reset_models,
    stream_handler,
    warm_up,
)

__all__ = [
    "InternalError",
    "InvalidInputError",
    "InvocationFailed",
    "ResponseTooLargeError",
    "ServerlessConfig",
    "Shape",
    "UploadFailedError",
    "VideoRequest",
    "detect_shape",
    "generate_video_sync",
    "get_models",
    "handler",
    "invoke",
    "lambda_handler",
    "model_loads",
    "parse_request",
    "reset_models",
    "stream_handler",
    "warm_up",
]
