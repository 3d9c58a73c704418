"""Every bad input gets a 4xx naming the field, and a refused request writes nothing."""

from __future__ import annotations

import base64
import io
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from framepack_api.settings import Settings

from support.server import FAST, png_bytes


def rows(settings: Settings) -> int:
    with sqlite3.connect(settings.data_dir / "framepack-api.db") as db:
        return int(db.execute("SELECT count(*) FROM jobs").fetchone()[0])


def input_files(settings: Settings) -> list[Path]:
    return [p for p in (settings.storage_dir / "inputs").rglob("*") if p.is_file()]


def field_of(body: dict[str, Any]) -> str:
    detail = body["detail"]
    return str(detail[0]["loc"][-1]) if isinstance(detail, list) else ""


@pytest.fixture(scope="session")
def bomb_png() -> bytes:
    out = io.BytesIO()
    Image.new("1", (12000, 12000)).save(out, format="PNG")  # 144 Mpx that compress to ~20 KB
    return out.getvalue()


def jpeg(img: Image.Image, exif: Image.Exif | None = None) -> bytes:
    out = io.BytesIO()
    img.save(out, format="JPEG", exif=exif.tobytes() if exif else b"")
    return out.getvalue()


BAD_MULTIPART = [
    ("not an image", {"image": b"hello, I am text"}, {}, "image", 422),
    ("empty file", {"image": b""}, {}, "image", 422),
    ("truncated", {"image": png_bytes((200, 200))[:300]}, {}, "image", 422),
    ("steps too high", {}, {"steps": "101"}, "steps", 422),
    ("steps not a number", {}, {"steps": "many"}, "steps", 422),
    ("negative length", {}, {"video_length": "-1"}, "video_length", 422),
    ("cfg below range", {}, {"cfg": "0.5"}, "cfg", 422),
    ("bad sampling mode", {}, {"sampling_mode": "sideways"}, "sampling_mode", 422),
    ("seed too large", {}, {"seed": str(2**32)}, "seed", 422),
    ("crf out of range", {}, {"mp4_crf": "60"}, "mp4_crf", 422),
    ("resolution below 64", {}, {"resolution": "32"}, "resolution", 422),
    ("resolution above server max", {}, {"resolution": "1024"}, "resolution", 422),
    ("unknown field", {}, {"stepz": "3"}, "stepz", 422),
    ("priority out of range", {}, {"priority": "1000"}, "priority", 422),
    ("end image with forward", {"end_image": png_bytes()}, {"sampling_mode": "forward"}, "end_image", 422),
    ("bad end image", {"end_image": b"nope"}, {}, "end_image", 422),
]


@pytest.mark.parametrize(("case", "files", "fields", "field", "code"), BAD_MULTIPART,
                         ids=[c[0] for c in BAD_MULTIPART])
def test_bad_multipart_input_is_refused_and_writes_nothing(
    api: TestClient, settings: Settings, case: str, files: dict[str, bytes], fields: dict[str, str],
    field: str, code: int,
) -> None:
    upload = {"image": png_bytes(), **files}
    r = api.post("/generate", data={**FAST, **fields},
                 files={k: (f"{k}.png", v, "image/png") for k, v in upload.items()})
    assert r.status_code == code, r.text
    assert field_of(r.json()) == field, r.json()
    assert rows(settings) == 0 and input_files(settings) == []


def test_decompression_bomb_is_refused_before_decoding(
    api: TestClient, settings: Settings, bomb_png: bytes
) -> None:
    r = api.post("/generate", data=FAST, files={"image": ("bomb.png", bomb_png, "image/png")})
    assert r.status_code == 413
    assert field_of(r.json()) == "image" and "12000x12000" in r.json()["detail"][0]["msg"]
    assert rows(settings) == 0 and input_files(settings) == []


def test_upload_over_the_size_cap(api: TestClient, settings: Settings) -> None:
    big = b"\x89PNG" + b"0" * 2_100_000
    r = api.post("/generate", data=FAST, files={"image": ("big.png", big, "image/png")})
    assert r.status_code == 413 and field_of(r.json()) == "image"
    assert "limit" in r.json()["detail"][0]["msg"] and rows(settings) == 0


@pytest.mark.parametrize(("image", "problem"), [
    ("%%%not-base64%%%", "base64"),
    (base64.b64encode(b"plain text").decode(), "decodable"),
    ("", "empty"),
])
def test_bad_json_images(api: TestClient, settings: Settings, image: str, problem: str) -> None:
    r = api.post("/generate", json={**FAST, "image": image})
    assert r.status_code == 422 and field_of(r.json()) == "image"
    assert problem in r.json()["detail"][0]["msg"] and rows(settings) == 0


def test_json_image_over_the_size_cap(api: TestClient, settings: Settings) -> None:
    r = api.post("/generate", json={**FAST, "image": base64.b64encode(b"x" * 2_100_000).decode()})
    assert r.status_code == 413 and field_of(r.json()) == "image" and rows(settings) == 0


def test_missing_image_and_wrong_content_type(api: TestClient) -> None:
    r = api.post("/generate", data=FAST)
    assert r.status_code == 422 and field_of(r.json()) == "image"
    r = api.post("/generate", content=b"image=1", headers={"content-type": "text/plain"})
    assert r.status_code == 422 and field_of(r.json()) == "body"
    r = api.post("/generate", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and field_of(r.json()) == "body"


def test_a_good_request_writes_one_row_and_a_normalised_png(api: TestClient, settings: Settings) -> None:
    rgba = Image.new("RGBA", (80, 40), (255, 0, 0, 0))  # fully transparent red
    out = io.BytesIO()
    rgba.save(out, format="PNG")
    r = api.post("/generate", data=FAST, files={"image": ("a.png", out.getvalue(), "image/png")})
    assert r.status_code == 200 and r.json()["status"] == "pending"
    assert r.headers["location"] == f"/status/{r.json()['job_id']}"
    [stored] = input_files(settings)
    img = Image.open(stored)
    assert img.mode == "RGB" and img.getpixel((5, 5)) == (255, 255, 255)  # flattened onto white
    assert rows(settings) == 1
    status = api.get(f"/status/{r.json()['job_id']}").json()
    assert status["params"]["resolution"] == 64 and status["queue_position"] == 1


def test_default_resolution_is_the_tiny_one(api: TestClient) -> None:
    fields = {k: v for k, v in FAST.items() if k != "resolution"}
    job_id = api.post("/generate", data=fields, files={"image": ("a.png", png_bytes(), "image/png")}).json()
    assert api.get(f"/status/{job_id['job_id']}").json()["params"]["resolution"] == 128


def test_exif_orientation_is_applied(api: TestClient, settings: Settings) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    r = api.post("/generate", data=FAST,
                 files={"image": ("r.jpg", jpeg(Image.new("RGB", (120, 60), "green"), exif), "image/jpeg")})
    assert r.status_code == 200
    [stored] = input_files(settings)
    assert Image.open(stored).size == (60, 120)


def test_status_and_cancel_of_unknown_job(api: TestClient) -> None:
    for r in (api.get("/status/nope"), api.post("/cancel/nope")):
        assert r.status_code == 404 and r.json() == {"detail": "job nope not found"}


def test_health_reports_the_tiny_model_and_no_workers(api: TestClient) -> None:
    body = api.get("/health").json()
    assert body["database"] is True and body["workers_alive"] == 0
    assert body["tiny_model"] is True and "TINY" in body["warning"]


def test_openapi_documents_every_generate_field(api: TestClient) -> None:
    spec = api.get("/openapi.json").json()
    body = spec["paths"]["/generate"]["post"]["requestBody"]["content"]
    form = body["multipart/form-data"]["schema"]["properties"]
    assert form["image"]["format"] == "binary"
    for name in ("prompt", "seed", "video_length", "latent_window_size", "steps", "cfg", "gs", "rs",
                 "gpu_memory_preservation", "use_teacache", "mp4_crf", "sampling_mode", "resolution"):
        assert form[name].get("description"), name
    assert "application/json" in body and api.get("/docs").status_code == 200


def test_list_fields_in_a_form_repeat_or_split(api: TestClient, settings: Settings) -> None:
    image = {"image": ("a.png", png_bytes(), "image/png")}
    r = api.post("/generate", data={**FAST, "lora_paths": "missing.safetensors"}, files=image)
    assert r.status_code == 422 and field_of(r.json()) == "lora_paths"
    r = api.post("/generate", data={**FAST, "lora_scales": "[1.0, 0.5]"}, files=image)
    assert r.status_code == 422 and "lora_scales has 2 values for 0 lora_paths" in str(r.json())
    assert rows(settings) == 0
