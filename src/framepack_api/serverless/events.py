"""What comes in and what goes out of a serverless invocation.

Three event shapes reach ``lambda_handler``: a direct invocation (the parameters are the event), and
API Gateway's REST (payload v1) and HTTP API (payload v2) proxy events, whose JSON arrives as a
``body`` string, sometimes base64-encoded. The answer has the shape of the question: the plain body
for a direct invocation, ``{statusCode, headers, body}`` for a proxy event.

Parameters are checked by the HTTP API's own ``VideoParams`` and image checks, so a request that
one front door accepts the other accepts too.
"""

from __future__ import annotations

import base64
import binascii
import enum
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from PIL import Image
from pydantic import ValidationError

from framepack_api import safe_json
from framepack_api.api.uploads import check_size, decode_base64, normalise_image
from framepack_api.errors import InvalidInput
from framepack_api.hardware import default_resolution
from framepack_api.limits import apply_server_limits
from framepack_api.net_guard import NetGuard
from framepack_api.params import VideoParams
from framepack_api.params.fields import text_problem
from framepack_api.serverless.image_urls import check_image_url, fetch_image
from framepack_api.settings import Settings

IMAGE_FIELD = "input_image_b64"
END_IMAGE_FIELD = "end_image_b64"
IMAGE_URL_FIELD = "input_image_url"
END_IMAGE_URL_FIELD = "end_image_url"
OUTPUT_URL_FIELD = "output_url"
# Keys only API Gateway puts in an event; none of them is a parameter name, so no direct event has them.
_PROXY_KEYS = frozenset({"body", "requestContext", "httpMethod", "routeKey", "rawPath"})


class Shape(str, enum.Enum):
    direct = "direct"
    rest_v1 = "apigateway-rest-v1"
    http_v2 = "apigateway-http-v2"

    @property
    def is_proxy(self) -> bool:
        return self is not Shape.direct


def detect_shape(event: Any) -> Shape:
    if not isinstance(event, Mapping) or not _PROXY_KEYS.intersection(event):
        return Shape.direct
    # Payload format 2.0 names itself; REST APIs and HTTP APIs on format 1.0 send the v1 layout.
    return Shape.http_v2 if event.get("version") == "2.0" else Shape.rest_v1


def request_data(event: Any, shape: Shape) -> Any:
    """The parameters object of an event: the event itself, or its decoded JSON ``body``."""
    if not shape.is_proxy:
        return event
    body = event.get("body")
    if body is None or body == "":
        raise InvalidInput("body", "the request has no body; send the parameters as a JSON object")
    if not isinstance(body, str):
        raise InvalidInput("body", f"must be a JSON string, got {type(body).__name__}")
    if event.get("isBase64Encoded"):
        try:
            body = base64.b64decode(body, validate=True).decode("utf-8")
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput("body", f"isBase64Encoded is true but the body is not base64 text ({exc})") \
                from None
    # The same checks as an HTTP JSON body: no NaN, lone surrogates, NUL characters or deep nesting.
    return safe_json.loads(body)


def wrap(shape: Shape, status: int, body: dict[str, Any]) -> dict[str, Any]:
    """The answer in the event's shape. Direct invocations get the body itself (errors carry ``status``)."""
    if not shape.is_proxy:
        return body
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body, separators=(",", ":")),
        "isBase64Encoded": False,
    }


def response_bytes(response: dict[str, Any]) -> int:
    """Size of the response as the platform serialises it (a proxy body is JSON inside JSON)."""
    return len(json.dumps(response, separators=(",", ":")).encode("utf-8"))


def error_body(status: int, kind: str, message: str, *, field: str | None = None,
               error_id: str | None = None) -> dict[str, Any]:
    """One error layout for every shape. ``error`` is a string: RunPod marks a job failed on that key."""
    body: dict[str, Any] = {"error": message, "status": status, "type": kind}
    if field is not None:
        body["field"] = field
    if error_id is not None:
        body["error_id"] = error_id
    return body


@dataclass
class VideoRequest:
    """A validated request: FramePack parameters, decoded images, and where the MP4 should go."""

    params: VideoParams
    image: Image.Image
    end_image: Image.Image | None = None
    output_url: str | None = None


def parse_request(data: Any, settings: Settings, *, fetch_timeout: float = 60.0) -> VideoRequest:
    """Validate everything before anything runs: bad input never loads a model or writes a file.

    Images come as base64 (``input_image_b64``) or by URL (``input_image_url``); URLs are fetched
    last, once every other field has passed, so a bad field never costs a download.
    """
    if not isinstance(data, Mapping):
        raise InvalidInput("body", f"the parameters must be a JSON object, got {type(data).__name__}")
    fields = {k: v for k, v in data.items() if v is not None}
    guard = NetGuard.from_entries(settings.outbound_allow)
    start = _image_source(fields, IMAGE_FIELD, IMAGE_URL_FIELD, guard)
    end = _image_source(fields, END_IMAGE_FIELD, END_IMAGE_URL_FIELD, guard)
    output_url = fields.pop(OUTPUT_URL_FIELD, None)
    if start is None:
        raise InvalidInput(IMAGE_FIELD, f"required: the start image as base64 (PNG, JPEG, WebP, ...), "
                                        f"or its URL as {IMAGE_URL_FIELD}")
    if "has_end_image" in fields:
        raise InvalidInput("has_end_image", f"set by the server from {END_IMAGE_FIELD}; do not send it")
    for name in ("has_input_video", "extend_job_id", "remixed_from", "extension_output"):
        if name in fields:  # video extension runs through the HTTP API only (docs/API.md#video-extension)
            raise InvalidInput(name, "video extension is not offered by the serverless handler")
    params = _video_params(fields, settings, has_end_image=end is not None,
                           end_field=end[0] if end is not None else END_IMAGE_FIELD)
    checked_output_url = _output_url(output_url, settings) if output_url is not None else None
    return VideoRequest(
        params=params,
        image=_image(*start, settings, guard, fetch_timeout),
        end_image=_image(*end, settings, guard, fetch_timeout) if end is not None else None,
        output_url=checked_output_url,
    )


def _image_source(fields: dict[str, Any], b64_field: str, url_field: str,
                  guard: NetGuard) -> tuple[str, Any] | None:
    """(field, value) of an image given either way; both at once is refused."""
    b64 = fields.pop(b64_field, None)
    url = fields.pop(url_field, None)
    if b64 is not None and url is not None:
        raise InvalidInput(url_field, f"give the image once: {b64_field} or {url_field}, not both")
    if url is not None:
        return url_field, check_image_url(url_field, url, guard)
    return (b64_field, b64) if b64 is not None else None


def _video_params(fields: dict[str, Any], settings: Settings, *, has_end_image: bool,
                  end_field: str) -> VideoParams:
    try:
        params = VideoParams.model_validate({**fields, "has_end_image": has_end_image})
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = ".".join(str(part) for part in errors[0]["loc"]) or "body"
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
        raise InvalidInput(first, problems) from None
    # The same server limits as every HTTP entry point.
    return apply_server_limits(settings, params, default_resolution=default_resolution(settings),
                               end_image_field=end_field)


def _image(field: str, value: Any, settings: Settings, guard: NetGuard, fetch_timeout: float) -> Image.Image:
    if field in (IMAGE_URL_FIELD, END_IMAGE_URL_FIELD):
        data = fetch_image(field, value, guard, max_bytes=settings.max_upload_bytes, timeout=fetch_timeout)
    elif not isinstance(value, str):
        raise InvalidInput(field, f"must be a base64 string, got {type(value).__name__}")
    else:
        data = decode_base64(field, value, settings.max_upload_bytes)
    check_size(field, data, settings.max_upload_bytes)
    png = normalise_image(field, data, settings.max_image_pixels)
    with Image.open(io.BytesIO(png)) as img:
        img.load()
        return img.copy()


def _output_url(value: Any, settings: Settings) -> str:
    if not isinstance(value, str):
        raise InvalidInput(OUTPUT_URL_FIELD, f"must be a URL string, got {type(value).__name__}")
    problem = text_problem(value)
    if problem:
        raise InvalidInput(OUTPUT_URL_FIELD, problem)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput(OUTPUT_URL_FIELD,
                           "must be an http(s) URL that accepts PUT (a presigned upload URL)")
    # Address literals are refused here; host names when the upload connects (net_guard).
    try:
        NetGuard.from_entries(settings.outbound_allow).check_url(value, resolve=False)
    except ValueError as exc:
        raise InvalidInput(OUTPUT_URL_FIELD, str(exc)) from None
    return value
