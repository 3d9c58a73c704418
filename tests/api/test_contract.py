"""The OpenAPI contract (issue 13): every status code a route answers is in the spec with its body's
schema, error bodies match those schemas, request schemas list only what a client may send, and
security schemes appear when auth is on. In-process app on a real SQLite file, no worker."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from pydantic import BaseModel

from framepack_api.api.contract import ConflictBody, ErrorBody, OpenAIErrorBody, ValidationErrorBody

from support.server import png_bytes

REF = "#/components/schemas/"
SUBMITS = ["/generate", "/api/generate-image", "/api/batch-images", "/api/transfer-image", "/v1/videos"]


def error_refs(spec: dict[str, Any]) -> dict[tuple[str, str, str], str]:
    """(method, path, code) -> the component name of that error response's JSON body."""
    refs = {}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for code, response in operation["responses"].items():
                if int(code) >= 400:
                    schema = response["content"]["application/json"]["schema"]
                    refs[(method.upper(), path, code)] = schema["$ref"].removeprefix(REF)
    return refs


def conforms(model: type[BaseModel], body: Any) -> bool:
    model.model_validate(body, strict=True)  # raises when the body does not match its declared schema
    return set(body) <= set(model.model_fields)


def test_every_error_response_is_declared_with_its_body(api: TestClient) -> None:
    spec = api.get("/openapi.json").json()
    refs = error_refs(spec)
    schemas = spec["components"]["schemas"]
    assert set(refs.values()) <= set(schemas)
    assert "securitySchemes" not in spec["components"]  # auth is off
    for (method, path, code), ref in refs.items():
        if path.startswith("/v1/"):
            assert code != "422" and ref == "OpenAIErrorBody", (method, path, code)
        elif code in ("413", "422"):
            assert ref == "ValidationErrorBody", (method, path, code)
        elif code == "409":
            assert ref == "ConflictBody"
        elif (method, path, code) == ("GET", "/ready", "503"):
            assert ref == "Readiness"  # the probe's own body, with its reasons
        elif (method, path, code) != ("GET", "/health", "503"):
            assert ref == "ErrorBody", (method, path, code)
    for path in SUBMITS:
        responses = spec["paths"][path]["post"]["responses"]
        assert {"409", "413", "429", "507"} <= set(responses), path
        assert "Retry-After" in responses["429"]["headers"]
    operations = [(m.upper(), p) for p, ops in spec["paths"].items() for m in ops]
    for method, path in operations:
        assert (method, path, "413") in refs
        if "{" in path and path != "/api/video-generation/cache/{run_id}":  # that one answers deleted: false
            assert (method, path, "404") in refs, (method, path)
    for path in ("/result/{job_id}", "/download/video/{job_id}", "/api/image/{job_id}", "/thumbnail/{job_id}"):
        assert (("GET", path, "410") in refs), path
    assert "security" not in spec["paths"]["/queue"]["get"]


def test_error_bodies_match_their_declared_schemas(api: TestClient) -> None:
    unknown = api.get("/result/no-such-job")
    assert unknown.status_code == 404 and conforms(ErrorBody, unknown.json())
    small = {"prompt": "x", "steps": 1, "width": 64, "height": 64}
    job_id = api.post("/api/generate-image", json=small).json()["job_id"]
    not_ready = api.get(f"/result/{job_id}")
    assert not_ready.status_code == 409 and conforms(ConflictBody, not_ready.json())
    assert not_ready.json()["status"] == "pending"
    # The custom 422s (this route's own header check, the request guard, the server's field checks)
    # carry `type` as FastAPI's validation errors do.
    bad_resume = api.get("/events", headers={"Last-Event-ID": "not-a-number"})
    nul_query = api.get("/api/image/x", params={"index": "1\x00"})
    bad_image = api.post("/api/generate-image", json={"input_image": "not base64!"})
    for response, loc in ((bad_resume, ["header", "Last-Event-ID"]), (nul_query, ["query", "index"]),
                          (bad_image, ["body", "input_image"])):
        assert response.status_code == 422, response.text
        assert conforms(ValidationErrorBody, response.json())
        assert response.json()["detail"][0]["loc"] == loc and response.json()["detail"][0]["type"]
    too_large = api.post("/api/generate-image", content=b"{}", headers={"Content-Type": "application/json",
                                                                         "Content-Length": str(10**10)})
    assert too_large.status_code == 413 and conforms(ValidationErrorBody, too_large.json())
    openai = api.get("/v1/videos/nope")
    assert openai.status_code == 404 and conforms(OpenAIErrorBody, openai.json())
    assert conforms(OpenAIErrorBody, api.get("/v1/videos", params={"after": "ghost"}).json())


def test_with_auth_the_spec_declares_what_auth_accepts(make_client: Callable[..., TestClient]) -> None:
    with make_client(api_keys=["k1"], basic_auth_users=["ann:pw"]) as api:
        assert api.get("/openapi.json").status_code == 401
        spec = api.get("/openapi.json", headers={"X-API-Key": "k1"}).json()
        schemes = spec["components"]["securitySchemes"]
        assert schemes == {
            "bearerAuth": {"type": "http", "scheme": "bearer", "description": "An API key as a bearer token"},
            "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "basicAuth": {"type": "http", "scheme": "basic"}}
        alternatives: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"apiKeyHeader": []}, {"basicAuth": []}]
        for path, operations in spec["paths"].items():
            for operation in operations.values():
                if path in ("/health", "/ready"):  # probes are open; /health shows more with credentials
                    assert operation["security"] == [{}, *alternatives] and "401" not in operation["responses"]
                else:
                    assert operation["security"] == alternatives, path
                    assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
        refs = error_refs(spec)
        assert refs[("GET", "/queue", "401")] == "ErrorBody" and refs[("GET", "/v1/videos", "401")] == "OpenAIErrorBody"
        native, openai = api.get("/queue"), api.get("/v1/videos")
        assert native.status_code == openai.status_code == 401
        assert conforms(ErrorBody, native.json()) and conforms(OpenAIErrorBody, openai.json())
        basic = base64.b64encode(b"ann:pw").decode()
        assert api.get("/queue", headers={"Authorization": f"Basic {basic}"}).status_code == 200


def test_request_schemas_list_only_what_a_client_sends(api: TestClient) -> None:
    schemas = api.get("/openapi.json").json()["components"]["schemas"]
    for name in ("GenerateImageRequest", "BatchImagesRequest", "TransferImageRequest"):
        assert not {p for p in schemas[name]["properties"] if p.startswith("has_")}, name
    # Seed 002's clients send the flags; they are accepted and replaced by what the server saw.
    image = base64.b64encode(png_bytes((64, 64))).decode()
    sent = api.post("/api/generate-image", json={"prompt": "x", "steps": 1, "width": 64, "height": 64,
                                                 "has_input_image": True})
    assert sent.status_code == 200, sent.text
    assert api.get(f"/status/{sent.json()['job_id']}").json()["params"]["has_input_image"] is False
    transfer = api.post("/api/transfer-image", json={"target_image": image, "source_image": image, "steps": 1,
                                                     "has_source_mask": True, "has_target_mask": False})
    assert transfer.status_code == 200, transfer.text
    params = api.get(f"/status/{transfer.json()['job_id']}").json()["params"]
    assert (params["has_source_mask"], params["has_target_mask"]) == (False, False)
    # Optional bounded fields state their bounds as JSON Schema does (minimum/maximum, not ge/le).
    generate = api.get("/openapi.json").json()["paths"]["/generate"]["post"]["requestBody"]["content"]
    resolution = generate["multipart/form-data"]["schema"]["properties"]["resolution"]
    assert (resolution["minimum"], resolution["maximum"], resolution["type"]) == (64, 1280, "integer")
