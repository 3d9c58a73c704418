"""OpenAI's error shape for the /v1 routes: ``{"error": {"message", "type", "param", "code"}}``.

The native routes answer ``{"detail": ...}`` through the app-wide handlers in ``api/app.py``. The
/v1 routes use ``OpenAIRoute``, which turns every error raised inside a handler (domain errors,
request validation, HTTP exceptions) into OpenAI's shape before the app-wide handlers see it, so
the two dialects share one app without a second set of global handlers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from framepack_api.errors import (
    Conflict,
    FilesExpired,
    InsufficientStorage,
    InvalidInput,
    JobNotFound,
    JobNotReady,
    TooManyJobs,
    Unavailable,
)

log = logging.getLogger(__name__)

INVALID_REQUEST = "invalid_request_error"


class OpenAIError(Exception):
    """An error to answer in OpenAI's shape, raised by the /v1 handlers themselves."""

    def __init__(self, status_code: int, message: str, *, param: str | None = None,
                 code: str | None = None, type: str = INVALID_REQUEST,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.param = param
        self.code = code
        self.type = type
        self.headers = dict(headers or {})


async def json_object_body(request: Request) -> dict[str, Any]:
    """The request's JSON body, which every /v1 POST takes as an object; anything else is OpenAI's 400."""
    try:
        body = await request.json()
    except ValueError:
        raise OpenAIError(400, "The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise OpenAIError(400, "The request body must be a JSON object.", code="invalid_json")
    return body


def error_body(message: str, *, type: str = INVALID_REQUEST, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def openai_error_response(exc: Exception) -> JSONResponse:
    """The OpenAI-shaped answer to any exception raised while serving a /v1 request."""
    err = to_openai_error(exc)
    return JSONResponse(error_body(err.message, type=err.type, param=err.param, code=err.code),
                        status_code=err.status_code, headers=err.headers)


def to_openai_error(exc: Exception) -> OpenAIError:
    if isinstance(exc, OpenAIError):
        return exc
    if isinstance(exc, InvalidInput):
        if exc.too_large:
            return OpenAIError(413, exc.problem, param=exc.field, code="payload_too_large")
        return OpenAIError(400, exc.problem, param=exc.field, code="invalid_value")
    if isinstance(exc, RequestValidationError | ValidationError):
        return _from_validation(list(exc.errors()))
    if isinstance(exc, JobNotFound):
        return OpenAIError(404, f"Video with id '{exc.job_id}' not found.", code="video_not_found")
    if isinstance(exc, JobNotReady):
        return OpenAIError(404, f"Video is not ready yet: it is {exc.status}.", code="video_not_ready")
    if isinstance(exc, Conflict):
        return OpenAIError(409, str(exc), code="conflict")
    if isinstance(exc, InsufficientStorage):
        return OpenAIError(507, str(exc), type="server_error", code="insufficient_storage")
    if isinstance(exc, FilesExpired):
        return OpenAIError(404, f"The content of video '{exc.job_id}' has expired.", code="video_expired")
    if isinstance(exc, TooManyJobs):
        return OpenAIError(429, str(exc), type="rate_limit_error", code="rate_limit_exceeded",
                           headers={"Retry-After": str(exc.retry_after)})
    if isinstance(exc, Unavailable):
        return OpenAIError(503, str(exc), type="server_error", code="unavailable")
    if isinstance(exc, HTTPException):
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return OpenAIError(exc.status_code, message, headers=exc.headers)
    log.exception("unhandled error on a /v1 route", exc_info=exc)
    return OpenAIError(500, "The server had an error while processing your request.",
                       type="server_error", code="internal_error")


def unrouted_error(method: str, path: str, exc: HTTPException) -> OpenAIError:
    """A /v1 request that matched no route (404) or no method of its route (405), worded as OpenAI's
    API words it, so that the SDK raises NotFoundError and friends with a readable message."""
    if exc.status_code == 404:
        return OpenAIError(404, f"Invalid URL ({method} {path})", code="unknown_url")
    if exc.status_code == 405:
        return OpenAIError(405, f"Method not allowed: {method} {path}", code="method_not_allowed",
                           headers=exc.headers)
    return to_openai_error(exc)


def _from_validation(errors: list[Any]) -> OpenAIError:
    first = errors[0] if errors else {}
    loc = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "header")]
    param = ".".join(loc) or None
    kind = first.get("type", "")
    code = {"missing": "missing_required_parameter", "extra_forbidden": "unknown_parameter"}.get(
        kind, "invalid_value")
    message = first.get("msg", "Invalid request.")
    if param:
        message = f"Invalid value for '{param}': {message}"
    if kind == "extra_forbidden":
        message = f"Unknown parameter: '{param}'."
    return OpenAIError(400, message, param=param, code=code)


class OpenAIRoute(APIRoute):
    """An APIRoute whose errors come back in OpenAI's shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def openai_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                return openai_error_response(exc)

        return openai_handler
