"""Event shapes, body decoding, request validation and response wrapping; no model involved."""

from __future__ import annotations

import json
from typing import Any

import pytest

from framepack_api.errors import InvalidInput
from framepack_api.serverless.events import (
    Shape,
    detect_shape,
    parse_request,
    request_data,
    response_bytes,
    wrap,
)
from framepack_api.settings import Settings
from serverless.serverless_helpers import http_v2_event, rest_v1_event


def test_detect_shape(params: dict[str, Any]) -> None:
    assert detect_shape(params) is Shape.direct
    assert detect_shape(rest_v1_event(params)) is Shape.rest_v1
    assert detect_shape(http_v2_event(params)) is Shape.http_v2
    # A minimal proxy-like event (only a body) is still read as a proxy event.
    assert detect_shape({"body": "{}"}) is Shape.rest_v1
    assert detect_shape("not a dict") is Shape.direct


@pytest.mark.parametrize("build", [rest_v1_event, http_v2_event])
@pytest.mark.parametrize("base64_body", [False, True])
def test_request_data_decodes_proxy_bodies(params: dict[str, Any], build: Any, base64_body: bool) -> None:
    event = build(params, base64_body=base64_body)
    assert request_data(event, detect_shape(event)) == params


@pytest.mark.parametrize(("event", "problem"), [
    ({"httpMethod": "POST", "body": None}, "no body"),
    ({"httpMethod": "POST", "body": "{not json"}, "not valid JSON"),
    ({"httpMethod": "POST", "body": "%%%", "isBase64Encoded": True}, "not base64"),
    ({"httpMethod": "POST", "body": {"a": 1}}, "must be a JSON string"),
])
def test_bad_proxy_bodies_name_the_body(event: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidInput) as info:
        request_data(event, detect_shape(event))
    assert info.value.field == "body"
    assert problem in info.value.problem


def test_wrap_direct_is_the_body_and_proxy_is_an_envelope() -> None:
    body = {"seed": 1, "video_b64": "AAAA"}
    assert wrap(Shape.direct, 200, body) is body
    for shape in (Shape.rest_v1, Shape.http_v2):
        response = wrap(shape, 413, body)
        assert response["statusCode"] == 413
        assert response["headers"]["Content-Type"] == "application/json"
        assert json.loads(response["body"]) == body


def test_response_bytes_counts_json_inside_json() -> None:
    body = {"text": '"' * 100}
    # Each quote costs 2 bytes in the body string, then each of those 2 is escaped again: 4 bytes.
    assert response_bytes(wrap(Shape.rest_v1, 200, body)) > 4 * 100
    assert response_bytes(body) < 2 * 100 + 20


def test_parse_request_fills_the_default_resolution(params: dict[str, Any]) -> None:
    settings = Settings(model="tiny", _env_file=None)  # type: ignore[call-arg]
    request = parse_request({k: v for k, v in params.items() if k != "resolution"}, settings)
    assert request.params.resolution == 128  # hardware.default_resolution for the tiny model
    assert request.image.size == (96, 64)
    assert request.end_image is None and request.output_url is None
    assert request.params.has_end_image is False


def test_parse_request_takes_end_image_and_output_url(params: dict[str, Any]) -> None:
    settings = Settings(model="tiny", _env_file=None)  # type: ignore[call-arg]
    data = {**params, "end_image_b64": "data:image/png;base64," + params["input_image_b64"],
            "output_url": "https://bucket.example/v.mp4?X-Amz-Signature=1", "negative_prompt": None}
    request = parse_request(data, settings)
    assert request.params.has_end_image is True
    assert request.end_image is not None and request.end_image.size == (96, 64)
    assert request.output_url == data["output_url"]

