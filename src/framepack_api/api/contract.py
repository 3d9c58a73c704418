"""The OpenAPI contract: every status code each operation answers, each with its body's schema, and
the security schemes when auth is on, so that a client generated from ``/openapi.json`` expects what
the server really sends.

Routes declare the refusals that are theirs (``responses=errors(404, 409, 410)``: an unknown id, a
result not ready, files removed by retention). What the middleware and the error handlers give every
route is added here: 413 (body limit), 422 (or 400 on ``/v1``: a field is invalid, e.g. a NUL in a
query), 401 when auth is on. The body of each error is the one that ``api/app.py`` (native routes) or
``api/openai_errors.py`` (``/v1``) writes for that code, declared once below.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from framepack_api.api.auth import OPEN_PATHS
from framepack_api.settings import Settings


class ValidationProblem(BaseModel):
    loc: list[str | int] = Field(description="Where: body, query, path or header, then the field's path.")
    msg: str = Field(description="What is wrong with it.")
    type: str = Field(description="The kind of problem, e.g. missing, int_parsing, value_error.")


class ValidationErrorBody(BaseModel):
    """422 (413 when too large): FastAPI's validation shape, for the server's own checks too."""

    detail: list[ValidationProblem]


class ErrorBody(BaseModel):
    detail: str = Field(description="What went wrong, in words.")


class ConflictBody(BaseModel):
    detail: str = Field(description="What went wrong, in words.")
    status: str | None = Field(None, description="The job's status, when its result is not ready yet.")


class OpenAIErrorObject(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error, rate_limit_error or server_error.")
    param: str | None = Field(None, description="The request field at fault, if one is.")
    code: str | None = Field(None, description="A machine-readable code, e.g. video_not_found.")


class OpenAIErrorBody(BaseModel):
    """Every error of the /v1 routes, in OpenAI's shape."""

    error: OpenAIErrorObject


DESCRIPTIONS: dict[int, str] = {
    400: "The request is malformed (e.g. a broken multipart body)",
    401: "Missing or wrong credentials",
    404: "Unknown id (or none of the caller's)",
    409: "Not possible in the current state: the result is not ready (the body gives the status), "
         "or an Idempotency-Key was reused for a different request",
    410: "The retention policy removed the job's files",
    413: "The body, or an image in it, is too large",
    422: "A field is invalid; `detail` names it",
    429: "A limit on pending jobs is reached; retry after Retry-After seconds",
    503: "The service cannot serve now",
    507: "The server's disk is below its free-space floor (MIN_FREE_DISK_MB)",
}
OPENAI_DESCRIPTIONS: dict[int, str] = {
    **DESCRIPTIONS,
    400: "A field is invalid; `error.param` names it",
    404: "Unknown video, or its content is not ready or has expired (`error.code` says which)",
    409: "An Idempotency-Key was reused for a different request",
}
NATIVE_BODIES: dict[int, type[BaseModel]] = {413: ValidationErrorBody, 422: ValidationErrorBody, 409: ConflictBody}
# Codes of routes that create jobs: idempotency conflicts, admission limits, the disk floor.
SUBMIT_CODES = (409, 429, 507)
HEADERS: dict[int, dict[str, Any]] = {
    429: {"Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer"}}},
    401: {"WWW-Authenticate": {"description": "The accepted schemes", "schema": {"type": "string"}}},
}
ERROR_MODELS: tuple[type[BaseModel], ...] = (ValidationProblem, ValidationErrorBody, ErrorBody, ConflictBody,
                                             OpenAIErrorObject, OpenAIErrorBody)


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """A route's own refusals, for its ``responses=``; their bodies' schemas are filled in centrally."""
    return {code: {"description": DESCRIPTIONS[code]} for code in codes}


def is_openai_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


def security_schemes(settings: Settings) -> dict[str, dict[str, Any]]:
    """What auth.py accepts, as OpenAPI security schemes; empty while auth is off."""
    schemes: dict[str, dict[str, Any]] = {}
    if settings.api_keys or settings.admin_api_keys:
        schemes["bearerAuth"] = {"type": "http", "scheme": "bearer", "description": "An API key as a bearer token"}
        schemes["apiKeyHeader"] = {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    if settings.basic_auth_users:
        schemes["basicAuth"] = {"type": "http", "scheme": "basic"}
    return schemes


def install_contract(app: FastAPI, settings: Settings) -> None:
    """Make ``app.openapi()`` return the completed contract (built once, then cached by FastAPI)."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            complete(generate(), settings)  # FastAPI's generator also stores it in app.openapi_schema
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def complete(spec: dict[str, Any], settings: Settings) -> None:
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for model in ERROR_MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    schemes = security_schemes(settings)
    if schemes:
        components["securitySchemes"] = schemes
    for path, operations in spec.get("paths", {}).items():
        for operation in operations.values():
            _complete_operation(path, operation, schemes)
    # FastAPI's own validation schemas, replaced by ValidationErrorBody: dropped once nothing refers to them.
    for name in ("HTTPValidationError", "ValidationError"):
        if name in schemas and f'"#/components/schemas/{name}"' not in json.dumps(spec):
            del schemas[name]


def _complete_operation(path: str, operation: dict[str, Any], schemes: dict[str, dict[str, Any]]) -> None:
    openai = is_openai_path(path)
    responses: dict[str, Any] = operation.setdefault("responses", {})
    # Every route: the body limit and the request guard (NUL characters, broken JSON) of api/app.py.
    universal = [413, 400] if openai else [413, 422]
    protected = bool(schemes) and path not in OPEN_PATHS
    if protected:
        universal.append(401)
    if openai:
        responses.pop("422", None)  # /v1 answers validation errors as 400 in OpenAI's shape
    for code in universal:
        responses.setdefault(str(code), {})
    descriptions = OPENAI_DESCRIPTIONS if openai else DESCRIPTIONS
    for key, response in responses.items():
        code = int(key) if key.isdigit() else 0
        if code < 400:
            continue
        response.setdefault("description", descriptions.get(code, "Error"))
        if response.get("content") is None or "HTTPValidationError" in str(response.get("content")):
            model = OpenAIErrorBody if openai else NATIVE_BODIES.get(code, ErrorBody)
            response["content"] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}
        if code in HEADERS:
            response.setdefault("headers", {}).update(HEADERS[code])
    if schemes:
        alternatives: list[dict[str, list[str]]] = [{name: []} for name in schemes]
        # /health answers without credentials too, and shows more to a caller that sends them.
        operation["security"] = alternatives if protected else [{}, *alternatives]
