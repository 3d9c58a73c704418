"""Issue 13: /v1 answers validate strictly with the `openai` package's own types, OpenAI's model names
are aliases of FramePack, and paths or methods that do not exist answer in OpenAI's error shape."""

from __future__ import annotations

import base64
from typing import Any

import openai
import pytest
from fastapi.testclient import TestClient
from openai import OpenAI
from openai.types import Video, VideoDeleteResponse

from _servers import png_bytes

SDK_SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")


def strict(body: dict[str, Any]) -> Video:
    return Video.model_validate(body, strict=True)


@pytest.mark.parametrize("size", [*SDK_SIZES, None])
def test_create_retrieve_and_list_validate_strictly(client: TestClient, size: str | None) -> None:
    fields = {"prompt": "p", "seconds": "4"} | ({"size": size} if size else {})
    created = client.post("/v1/videos", data=fields, files={"input_reference": ("s.png", png_bytes(), "image/png")})
    assert created.status_code == 200, created.text
    video = strict(created.json())
    assert video.size == (size or "720x1280")  # the SDK's default when none is sent
    width, height = (int(side) for side in video.size.split("x"))
    frame_w, frame_h = (int(side) for side in created.json()["frame_size"].split("x"))
    # Made at the test server's 64-pixel resolution, in the asked orientation.
    assert frame_w % 16 == 0 and frame_h % 16 == 0 and (frame_w > frame_h) == (width > height)
    assert strict(client.get(f"/v1/videos/{video.id}").json()) == video
    listed = client.get("/v1/videos").json()["data"]
    assert [strict(item).id for item in listed] == [video.id]


def test_a_cancelled_video_validates_strictly_with_its_error(client: TestClient) -> None:
    video_id = client.post("/v1/videos", json={"prompt": "p", "size": "1280x720"}).json()["id"]
    assert client.post(f"/cancel/{video_id}").json()["status"] == "cancelled"
    video = strict(client.get(f"/v1/videos/{video_id}").json())
    assert video.status == "failed" and video.error is not None and video.error.code == "cancelled"
    deleted = VideoDeleteResponse.model_validate(client.delete(f"/v1/videos/{video_id}").json(), strict=True)
    assert deleted.deleted is True and deleted.id == video_id


@pytest.mark.parametrize("model", ["sora-2", "sora-2-pro", "sora-2-2025-10-06"])
def test_sora_model_names_run_framepack(client: TestClient, model: str) -> None:
    data_url = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    r = client.post("/v1/videos", json={"prompt": "p", "model": model, "input_reference": {"image_url": data_url}})
    assert r.status_code == 200, r.text
    assert strict(r.json()).model == "framepack"
    job = client.get(f"/status/{r.json()['id']}").json()
    assert job["params"]["sampling_mode"] == "reverse"


def test_other_model_names_are_still_refused(client: TestClient) -> None:
    r = client.post("/v1/videos", json={"prompt": "p", "model": "sora-3"})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "model" and "framepack-f1" in r.json()["error"]["message"]


@pytest.mark.parametrize(("method", "path", "status", "code"), [
    ("GET", "/v1/images/generations", 404, "unknown_url"),
    ("GET", "/v1", 404, "unknown_url"),
    ("POST", "/v1/videos/abc/remix/extra", 404, "unknown_url"),
    ("PUT", "/v1/videos", 405, "method_not_allowed"),
    ("PATCH", "/v1/videos/abc", 405, "method_not_allowed"),
])
def test_unknown_paths_and_methods_answer_in_openai_shape(client: TestClient, method: str, path: str,
                                                          status: int, code: str) -> None:
    r = client.request(method, path)
    assert r.status_code == status
    assert r.json() == {"error": {"message": r.json()["error"]["message"], "type": "invalid_request_error",
                                  "param": None, "code": code}}
    assert method in r.json()["error"]["message"] and path in r.json()["error"]["message"]
    if status == 405:
        assert r.headers["allow"]


def test_native_unknown_paths_keep_the_native_shape(client: TestClient) -> None:
    assert client.get("/no/such/path").json() == {"detail": "Not Found"}
    assert client.put("/generate").json() == {"detail": "Method Not Allowed"}


def test_the_sdk_raises_its_own_errors_for_unknown_paths(sdk: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.get("/videos/abc/nothing-here", cast_to=object)
    assert missing.value.code == "unknown_url" and "GET /v1/videos/abc/nothing-here" in missing.value.message
    with pytest.raises(openai.APIStatusError) as method:
        sdk.patch("/videos", cast_to=object)
    assert method.value.status_code == 405 and method.value.code == "method_not_allowed"
