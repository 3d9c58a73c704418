"""Keyframes at the API: `keyframe_times` with one `keyframe_images` entry each, multipart or JSON;
every refusal is a 4xx naming the field and leaves no job behind; /status shows what is pinned where."""

from __future__ import annotations

import base64
import sqlite3
from typing import Any

import pytest
from fastapi.testclient import TestClient

from framepack_api.settings import Settings

from support.server import FAST, png_bytes

# window 2: sections of 8 frames (0.267 s); 1.2 s → 4 sections ending at 0.267, 0.533, 0.8, 1.067 s
LONG = {**FAST, "video_length": "1.2"}


def rows(settings: Settings) -> int:
    with sqlite3.connect(settings.data_dir / "framepack-api.db") as db:
        return int(db.execute("SELECT count(*) FROM jobs").fetchone()[0])


def png(colour: tuple[int, int, int]) -> tuple[str, bytes, str]:
    return ("k.png", png_bytes(color=colour), "image/png")


def post(api: TestClient, fields: dict[str, Any], keyframes: list[tuple[str, bytes, str]],
         end: bool = False) -> Any:
    files = [("image", ("a.png", png_bytes(), "image/png")), *[("keyframe_images", k) for k in keyframes]]
    if end:
        files.append(("end_image", png((0, 0, 255))))
    return api.post("/generate", data=fields, files=files)


def test_multipart_keyframes_are_stored_and_shown_in_status(api: TestClient, settings: Settings) -> None:
    r = post(api, {**LONG, "keyframe_times": "0.8, 0.3"}, [png((0, 255, 0)), png((255, 255, 0))])
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]
    status = api.get(f"/status/{job_id}").json()
    assert status["params"]["keyframe_times"] == [0.8, 0.3]
    assert status["keyframes"] == [{"time": 0.3, "section": 1, "pinned_at": 0.2667},
                                   {"time": 0.8, "section": 3, "pinned_at": 0.8}]
    # One PNG per input in the job's input directory (storage root = data dir by default).
    inputs = sorted(p.name for p in settings.data_dir.rglob(f"inputs/{job_id}/*.png"))
    assert inputs == ["image.png", "keyframe_0.png", "keyframe_1.png"]


def test_json_keyframes_with_an_end_image(api: TestClient) -> None:
    b64 = [base64.b64encode(png_bytes(color=c)).decode() for c in ((0, 255, 0), (9, 9, 9))]
    body = {**LONG, "image": base64.b64encode(png_bytes()).decode(), "end_image": b64[1],
            "keyframe_times": [0.5], "keyframe_images": b64[:1]}
    r = api.post("/generate", json=body)
    assert r.status_code == 200, r.text
    status = api.get(f"/status/{r.json()['job_id']}").json()
    assert status["params"]["has_end_image"] is True
    assert status["keyframes"] == [{"time": 0.5, "section": 2, "pinned_at": 0.5333}]


def test_no_keyframes_no_keyframes_view(api: TestClient) -> None:
    r = post(api, LONG, [])
    assert r.status_code == 200, r.text
    assert api.get(f"/status/{r.json()['job_id']}").json()["keyframes"] is None


BAD = [
    ("time 0", {"keyframe_times": "0"}, 1, False, ["body", "keyframe_times"], "must be > 0"),
    ("negative", {"keyframe_times": "-1"}, 1, False, ["body", "keyframe_times"], "outside the video"),
    ("after the end", {"keyframe_times": "1.3"}, 1, False, ["body", "keyframe_times"], "<= video_length (1.2s)"),
    ("same section", {"keyframe_times": "0.5,0.6"}, 2, False, ["body", "keyframe_times"],
     "anchors section 2 (ending at 0.533333s), as the keyframe at 0.5s does"),
    ("the end image's section", {"keyframe_times": "1.2"}, 1, True, ["body", "keyframe_times"],
     "as the end image does"),
    ("forward", {"keyframe_times": "0.5", "sampling_mode": "forward"}, 1, False, ["body", "keyframe_times"],
     "need sampling_mode 'reverse'"),
    ("not a number", {"keyframe_times": "soon"}, 1, False, ["body", "keyframe_times", 0], "valid number"),
    ("image without time", {}, 1, False, ["body", "keyframe_images"], "1 keyframe image(s) for 0 keyframe_times"),
    ("time without image", {"keyframe_times": "0.5,0.9"}, 1, False, ["body", "keyframe_images"],
     "1 keyframe image(s) for 2 keyframe_times"),
    ("times without images", {"keyframe_times": "0.5"}, 0, False, ["body", "keyframe_times"],
     "0 keyframe image(s) for 1 keyframe_times"),
    ("too many", {"keyframe_times": ",".join(str(0.1 * i) for i in range(1, 11))}, 9, False,
     ["body", "keyframe_images"], "at most 8"),
]


@pytest.mark.parametrize(("case", "fields", "images", "end", "loc", "problem"), BAD, ids=[c[0] for c in BAD])
def test_bad_keyframes_are_a_422_naming_the_field(api: TestClient, settings: Settings, case: str,
                                                  fields: dict[str, str], images: int, end: bool,
                                                  loc: list[str], problem: str) -> None:
    r = post(api, {**LONG, **fields}, [png((0, 200, 0))] * images, end=end)
    assert r.status_code == 422, r.text
    [error] = r.json()["detail"]
    assert error["loc"] == loc and problem in error["msg"], error
    assert rows(settings) == 0


def test_an_undecodable_keyframe_names_its_index(api: TestClient, settings: Settings) -> None:
    r = post(api, {**LONG, "keyframe_times": "0.3,0.8"}, [png((0, 200, 0)), ("k.png", b"not an image", "image/png")])
    assert r.status_code == 422, r.text
    [error] = r.json()["detail"]
    assert error["loc"] == ["body", "keyframe_images", "1"] and "not a decodable image" in error["msg"]
    assert rows(settings) == 0


def test_json_keyframe_images_must_be_base64_strings(api: TestClient) -> None:
    body = {**LONG, "image": base64.b64encode(png_bytes()).decode(), "keyframe_times": [0.5],
            "keyframe_images": [{"b64": "x"}]}
    r = api.post("/generate", json=body)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "keyframe_images"], r.text


def test_an_oversized_keyframe_is_a_413(make_client: Any) -> None:
    with make_client(max_upload_bytes=2000) as api:
        r = post(api, {**LONG, "keyframe_times": "0.5"}, [("k.png", png_bytes((400, 400)), "image/png")])
    assert r.status_code == 413, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "keyframe_images", "0"]
