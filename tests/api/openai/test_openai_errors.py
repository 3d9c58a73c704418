"""Every refusal of /v1/videos, in OpenAI's error shape; and the sizing rules. In-process, no worker."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from fastapi.testclient import TestClient

from _servers import png_bytes
from framepack_api.api.openai_errors import OpenAIError
from framepack_api.api.video_requests import local_bucket, parse_seconds, parse_size


def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    return dict(body["error"])


@pytest.mark.parametrize(("fields", "param", "code", "fragment"), [
    ({"model": "sora-3"}, "model", "invalid_model", "framepack, framepack-f1"),
    ({"seconds": "abc"}, "seconds", "invalid_value", "seconds"),
    ({"seconds": "0"}, "seconds", "invalid_value", "above 0"),
    ({"seconds": "-4"}, "seconds", "invalid_value", "above 0"),
    ({"seconds": "121"}, "seconds", "invalid_value", "at most 120"),
    ({"seconds": "nan"}, "seconds", "invalid_value", "seconds"),
    ({"size": "big"}, "size", "invalid_value", "WIDTHxHEIGHT"),
    ({"size": "0x720"}, "size", "invalid_value", "1..8192"),
    ({"size": "99999x10"}, "size", "invalid_value", "1..8192"),
    ({"frobnicate": "1"}, "frobnicate", "unknown_parameter", "Unknown parameter"),
    ({"steps": "0"}, "steps", "invalid_value", "greater than or equal to 1"),
    ({"gs": "lots"}, "gs", "invalid_value", "gs"),
    ({"resolution": "640"}, "resolution", "unknown_parameter", "'size'"),
    ({"sampling_mode": "forward"}, "sampling_mode", "unknown_parameter", "'model'"),
    ({"video_length": "3"}, "video_length", "unknown_parameter", "'seconds'"),
    ({"input_reference[file_id]": "file-123"}, "input_reference[file_id]", "unsupported_parameter", "files API"),
    ({"input_reference[image_url]": "https://example.com/a.png"}, "input_reference.image_url", "invalid_value",
     "data: URL"),
])
def test_multipart_refusals(client: TestClient, fields: dict[str, str], param: str, code: str,
                            fragment: str) -> None:
    response = client.post("/v1/videos", data={"prompt": "x", **fields},
                           files={"input_reference": ("a.png", png_bytes(), "image/png")})
    err = error_of(response, 400)
    assert (err["param"], err["code"], err["type"]) == (param, code, "invalid_request_error")
    assert fragment in err["message"]
    assert client.get("/v1/videos").json()["data"] == []  # nothing was queued


def test_missing_prompt(client: TestClient) -> None:
    err = error_of(client.post("/v1/videos", json={"model": "framepack"}), 400)
    assert (err["param"], err["code"]) == ("prompt", "missing_required_parameter")
    err = error_of(client.post("/v1/videos", json={"prompt": 5}), 400)
    assert (err["param"], err["code"]) == ("prompt", "invalid_type")


def test_bad_bodies(client: TestClient) -> None:
    assert error_of(client.post("/v1/videos", content=b"{nope", headers={"content-type": "application/json"}),
                    400)["code"] == "invalid_json"
    assert error_of(client.post("/v1/videos", json=["a"]), 400)["code"] == "invalid_json"
    assert error_of(client.post("/v1/videos", content=b"prompt=x",
                                headers={"content-type": "text/plain"}), 400)["code"] == "invalid_content_type"
    assert error_of(client.post("/v1/videos", json={"prompt": "x", "input_reference": 7}),
                    400)["param"] == "input_reference"
    err = error_of(client.post("/v1/videos", json={"prompt": "x", "input_reference": {"file_id": "f"}}), 400)
    assert err["code"] == "unsupported_parameter"


def test_bad_images(client: TestClient) -> None:
    err = error_of(client.post("/v1/videos", data={"prompt": "x"},
                               files={"input_reference": ("a.png", b"not an image", "image/png")}), 400)
    assert err["param"] == "input_reference" and "decodable" in err["message"]
    err = error_of(client.post("/v1/videos", json={"prompt": "x", "input_reference": {
        "image_url": "data:image/png;base64,@@@"}}), 400)
    assert err["param"] == "input_reference" and "base64" in err["message"]
    big = b"\x89PNG" + b"\0" * (64 * 1024 + 10)  # over this app's 64 KiB upload limit
    err = error_of(client.post("/v1/videos", data={"prompt": "x"},
                               files={"input_reference": ("a.png", big, "image/png")}), 413)
    assert err["code"] == "payload_too_large"
    err = error_of(client.post("/v1/videos", data={"prompt": "x"},
                               files={"other": ("a.png", png_bytes(), "image/png")}), 400)
    assert (err["param"], err["code"]) == ("other", "unknown_parameter")


def test_unknown_ids_and_not_ready(client: TestClient) -> None:
    assert error_of(client.get("/v1/videos/nope"), 404)["code"] == "video_not_found"
    assert error_of(client.delete("/v1/videos/nope"), 404)["code"] == "video_not_found"
    assert error_of(client.get("/v1/videos/nope/content"), 404)["code"] == "video_not_found"
    queued = client.post("/v1/videos", json={"prompt": "wait"}).json()
    assert queued["status"] == "queued"
    err = error_of(client.get(f"/v1/videos/{queued['id']}/content"), 404)
    assert err["code"] == "video_not_ready" and "queued" in err["message"]
    err = error_of(client.get(f"/v1/videos/{queued['id']}/content", params={"variant": "gif"}), 400)
    assert err["param"] == "variant"


def test_list_refusals(client: TestClient) -> None:
    assert error_of(client.get("/v1/videos", params={"limit": 0}), 400)["param"] == "limit"
    assert error_of(client.get("/v1/videos", params={"limit": 101}), 400)["param"] == "limit"
    assert error_of(client.get("/v1/videos", params={"order": "sideways"}), 400)["param"] == "order"
    err = error_of(client.get("/v1/videos", params={"after": "ghost"}), 400)
    assert (err["param"], err["code"]) == ("after", "invalid_value")


def test_native_routes_keep_their_own_shape(client: TestClient) -> None:
    assert client.get("/status/nope").json() == {"detail": "job nope not found"}


def test_json_create_is_queued_with_the_fields_asked(client: TestClient) -> None:
    data_url = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    r = client.post("/v1/videos", json={"prompt": "p", "seconds": 8, "size": "1792x1024", "seed": 7,
                                        "input_reference": {"image_url": data_url}})
    body = r.json()
    assert r.status_code == 200 and r.headers["openai-poll-after-ms"] == "1000"
    assert (body["seconds"], body["size"], body["model"], body["progress"]) == ("8", "1792x1024", "framepack", 0)
    assert body["frame_size"] == "80x48"  # the 64-pixel bucket nearest to 1792:1024
    job = client.get(f"/status/{body['id']}").json()
    assert job["params"]["seed"] == 7 and job["params"]["video_length"] == 8.0
    assert job["params"]["resolution"] == 64 and job["params"]["sampling_mode"] == "reverse"


def test_idempotency_key_returns_the_same_video(client: TestClient) -> None:
    headers = {"Idempotency-Key": "k-1"}
    first = client.post("/v1/videos", json={"prompt": "same"}, headers=headers).json()
    again = client.post("/v1/videos", json={"prompt": "same"}, headers=headers).json()
    assert first["id"] == again["id"] and len(client.get("/v1/videos").json()["data"]) == 1
    err = error_of(client.post("/v1/videos", json={"prompt": "other"}, headers=headers), 409)
    assert err["code"] == "conflict"


def test_sizing_rules() -> None:
    # sqrt(1280*720) = 960; FramePack's 480x832 bucket scaled by 1.5 is the nearest to 16:9
    assert local_bucket(1280, 720, 1280) == (960, 1248, 720)
    assert local_bucket(1280, 720, 640)[0] == 640  # scaled down to MAX_RESOLUTION
    assert local_bucket(16, 16, 640)[0] == 64  # never below 64
    _, w, h = local_bucket(720, 1280, 640)
    assert h > w  # portrait stays portrait
    assert parse_size(" 1280 x 720 ") == (1280, 720)
    assert parse_seconds("4", 120) == ("4", 4.0)
    assert parse_seconds(4.50, 120) == ("4.5", 4.5)
    assert parse_seconds(None, 120) == ("4", 4.0)
    with pytest.raises(OpenAIError):
        parse_seconds("inf", 1000)
