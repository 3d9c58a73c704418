"""Hostile input on every dialect, on SQLite and PostgreSQL: never a 5xx, every refusal names its
field, and nothing is written (rows in every table and files under storage are counted).

Each case was a 500 (or an accepted job that could never run) before issue 11: NaN/Infinity JSON
literals, booleans for numbers, broken JSON inside a field, lone UTF-16 surrogates, NUL characters
(PostgreSQL refuses them in text) and JSON nested 100,000 levels deep.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from framepack_api.serverless import handlers

from support.hostile import Target, names, png_b64

IMG = png_b64()
JSON = {"Content-Type": "application/json"}
DEEP = "[" * 100_000 + "]" * 100_000


def raw(text: str) -> dict[str, Any]:
    """A body sent as written: NaN literals and \\ud800 escapes that a JSON encoder would not produce."""
    return {"content": text.encode(), "headers": JSON}


def form(**fields: str) -> dict[str, Any]:
    return {"data": fields, "files": {"image": ("in.png", __import__("base64").b64decode(IMG), "image/png")}}


GEN = "/generate"
IMAGE = "/api/generate-image"
TRAIN = "/api/video-generation"

# (name, method, path, request kwargs, the field the refusal must name)
CASES: list[tuple[str, str, str, dict[str, Any], str]] = [
    # native /generate, JSON and multipart
    ("gen-nan-literal", "post", GEN, raw(f'{{"image":"{IMG}","video_length":NaN}}'), "video_length"),
    ("gen-infinity-literal", "post", GEN, raw(f'{{"image":"{IMG}","video_length":Infinity}}'), "video_length"),
    ("gen-minus-infinity", "post", GEN, raw(f'{{"image":"{IMG}","gs":-Infinity}}'), "gs"),
    ("gen-steps-true", "post", GEN, {"json": {"image": IMG, "steps": True}}, "steps"),
    ("gen-seed-true", "post", GEN, {"json": {"image": IMG, "seed": True}}, "seed"),
    ("gen-priority-true", "post", GEN, {"json": {"image": IMG, "priority": True}}, "priority"),
    ("gen-form-steps-nan", "post", GEN, form(steps="nan"), "steps"),
    ("gen-form-length-nan", "post", GEN, form(video_length="nan"), "video_length"),
    ("gen-form-length-inf", "post", GEN, form(video_length="inf"), "video_length"),
    ("gen-form-events-broken", "post", GEN, form(webhook_events="[1"), "webhook_events"),
    ("gen-json-events-broken", "post", GEN, {"json": {"image": IMG, "webhook_events": "[1"}}, "webhook_events"),
    ("gen-prompt-surrogate", "post", GEN, raw(f'{{"image":"{IMG}","prompt":"a\\ud800b"}}'), "prompt"),
    ("gen-prompt-nul", "post", GEN, {"json": {"image": IMG, "prompt": "a\x00b"}}, "prompt"),
    ("gen-form-prompt-nul", "post", GEN, form(prompt="a\x00b"), "prompt"),
    ("gen-form-negative-nul", "post", GEN, form(negative_prompt="\x00"), "negative_prompt"),
    ("gen-webhook-url-nul", "post", GEN, {"json": {"image": IMG, "webhook_url": "http://a.example/\x00"}},
     "webhook_url"),
    ("gen-form-webhook-url-nul", "post", GEN, form(webhook_url="http://a.example/\x00"), "webhook_url"),
    ("gen-lora-path-nul", "post", GEN, {"json": {"image": IMG, "lora_paths": ["a\x00.safetensors"]}},
     "lora_paths"),
    ("gen-lora-scale-nan", "post", GEN, raw(f'{{"image":"{IMG}","lora_paths":["a"],"lora_scales":[NaN]}}'),
     "lora_scales"),
    ("gen-deep-body", "post", GEN, raw(DEEP), "body"),
    ("gen-deep-field", "post", GEN, raw(f'{{"image":"{IMG}","prompt":{DEEP}}}'), "body"),
    ("gen-key-surrogate", "post", GEN, raw(f'{{"image":"{IMG}","\\udc00":1}}'), "body"),
    # image endpoints
    ("img-steps-nan", "post", IMAGE, raw('{"steps":NaN}'), "steps"),
    ("img-cfg-infinity", "post", IMAGE, raw('{"cfg":Infinity}'), "cfg"),
    ("img-steps-true", "post", IMAGE, {"json": {"steps": True}}, "steps"),
    ("img-seed-true", "post", IMAGE, {"json": {"seed": True}}, "seed"),
    ("img-width-true", "post", IMAGE, {"json": {"width": True}}, "width"),
    ("img-priority-true", "post", IMAGE, {"json": {"priority": True}}, "priority"),
    ("img-prompt-surrogate", "post", IMAGE, raw('{"prompt":"\\ud83d"}'), "prompt"),
    ("img-prompt-nul", "post", IMAGE, {"json": {"prompt": "\x00"}}, "prompt"),
    ("img-deep", "post", IMAGE, raw(DEEP), "body"),
    ("batch-prompt-nul", "post", "/api/batch-images", {"json": {"prompts": ["ok", "a\x00"]}}, "prompts"),
    ("batch-seed-true", "post", "/api/batch-images", {"json": {"prompts": ["a"], "seeds": [True]}}, "seeds"),
    ("transfer-strength-nan", "post", "/api/transfer-image",
     raw(f'{{"target_image":"{IMG}","source_image":"{IMG}","transfer_strength":NaN}}'), "transfer_strength"),
    ("image-id-nul", "get", "/api/image/a%00b", {}, "job_id"),
    # OpenAI-compatible /v1/videos
    ("v1-prompt-nul", "post", "/v1/videos", {"json": {"prompt": "a\x00"}}, "prompt"),
    ("v1-prompt-surrogate", "post", "/v1/videos", raw('{"prompt":"\\ud800"}'), "prompt"),
    ("v1-form-prompt-nul", "post", "/v1/videos", {"data": {"prompt": "a\x00"}, "files": {"x": ("", b"")}},
     "prompt"),
    ("v1-steps-true", "post", "/v1/videos", {"json": {"prompt": "a", "steps": True}}, "steps"),
    ("v1-cfg-nan", "post", "/v1/videos", raw('{"prompt":"a","cfg":NaN}'), "cfg"),
    ("v1-seconds-nan", "post", "/v1/videos", {"json": {"prompt": "a", "seconds": "nan"}}, "seconds"),
    ("v1-deep", "post", "/v1/videos", raw(DEEP), "body"),
    ("v1-after-nul", "get", "/v1/videos?after=a%00b", {}, "after"),
    ("v1-id-nul", "get", "/v1/videos/a%00b", {}, "video_id"),
    ("v1-delete-nul", "delete", "/v1/videos/a%00b", {}, "video_id"),
    ("v1-content-nul", "get", "/v1/videos/a%00b/content", {}, "video_id"),
    # training service (seed 004)
    ("train-run-nul", "post", f"{TRAIN}/generate", {"json": {"run_id": "a\x00", "drill_text": "x"}}, "run_id"),
    ("train-drill-nul", "post", f"{TRAIN}/generate", {"json": {"run_id": 1, "drill_text": "x\x00"}}, "drill_text"),
    ("train-run-surrogate", "post", f"{TRAIN}/generate", raw('{"run_id":"\\ud800","drill_text":"x"}'), "run_id"),
    ("train-drill-surrogate", "post", f"{TRAIN}/generate", raw('{"run_id":1,"drill_text":"\\udfff"}'),
     "drill_text"),
    ("train-run-true", "post", f"{TRAIN}/generate", {"json": {"run_id": True, "drill_text": "x"}}, "run_id"),
    ("train-status-nul", "get", f"{TRAIN}/status/a%00", {}, "run_id"),
    ("train-cache-nul", "delete", f"{TRAIN}/cache/a%00", {}, "run_id"),
    ("train-deep", "post", f"{TRAIN}/generate", raw(DEEP), "body"),
    # native ids
    ("status-nul", "get", "/status/a%00b", {}, "job_id"),
    ("cancel-nul", "post", "/cancel/a%00b", {}, "job_id"),
    ("result-nul", "get", "/result/a%00b", {}, "job_id"),
    ("events-nul", "get", "/events/a%00b", {}, "job_id"),
    ("query-nul", "get", "/api/image/x?index=%00", {}, "index"),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_refused_with_the_field_named_and_nothing_written(target: Target, method: str, path: str,
                                                          kwargs: dict[str, Any], field: str) -> None:
    before = target.written()
    response = getattr(target.client, method)(path, **kwargs)
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert names(response, field), response.text[:300]
    assert target.written() == before


def test_a_valid_request_still_writes_its_job(target: Target) -> None:
    """The counters see writes: the same app accepts a good request and stores its row and file."""
    before = target.written()
    response = target.client.post(GEN, json={"image": IMG, "prompt": "ok", "steps": 2})
    assert response.status_code == 200, response.text
    after = target.written()
    assert after["jobs"] == before["jobs"] + 1 and after["files"] == before["files"] + 1


# Serverless events take the same parameter models; no database, so checked once. A refused event
# never loads the model (that is where a run would start writing).
SERVERLESS: list[tuple[str, Any, str]] = [
    ("direct-length-nan", {"input_image_b64": IMG, "video_length": float("nan")}, "video_length"),
    ("direct-steps-true", {"input_image_b64": IMG, "steps": True}, "steps"),
    ("direct-seed-true", {"input_image_b64": IMG, "seed": True}, "seed"),
    ("direct-prompt-nul", {"input_image_b64": IMG, "prompt": "a\x00"}, "prompt"),
    ("direct-prompt-surrogate", {"input_image_b64": IMG, "prompt": "\ud800"}, "prompt"),
    ("direct-output-url-nul", {"input_image_b64": IMG, "output_url": "https://a.example/\x00"}, "output_url"),
    ("proxy-nan-literal", {"httpMethod": "POST", "body": f'{{"input_image_b64":"{IMG}","video_length":NaN}}'},
     "video_length"),
    ("proxy-surrogate", {"httpMethod": "POST", "body": f'{{"input_image_b64":"{IMG}","prompt":"\\ud800"}}'},
     "prompt"),
    ("proxy-deep", {"version": "2.0", "body": DEEP}, "body"),
]


@pytest.mark.parametrize(("event", "field"), [c[1:] for c in SERVERLESS], ids=[c[0] for c in SERVERLESS])
def test_serverless_refuses_with_the_field_named(event: Any, field: str) -> None:
    loads = handlers.model_loads()
    try:
        response = handlers.lambda_handler(event)
    except handlers.InvocationFailed as exc:  # a failed direct invocation raises with the body
        response = exc.body
    body = json.loads(response["body"]) if "statusCode" in response else response
    status = response.get("statusCode", body.get("status"))
    assert status == 400, body
    assert body["field"].split(".")[0] == field, body
    assert handlers.model_loads() == loads
