"""The image endpoints' validation, stored params, LoRA checks and queue order (in-process, no worker)."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from .conftest import b64_png


def png_b64(img: Image.Image) -> str:
    out = io.BytesIO()
    img.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()

SMALL: dict[str, Any] = {"prompt": "a cat", "steps": 1, "width": 64, "height": 64}


def status(client: TestClient, job_id: str) -> dict[str, Any]:
    r = client.get(f"/status/{job_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_generate_image_stores_rounded_size_and_input(client: TestClient, image_settings: Any) -> None:
    r = client.post("/api/generate-image", json={**SMALL, "width": 100, "height": 70, "input_image": b64_png(),
                                                 "target_index": 3})
    assert r.status_code == 200, r.text
    job = status(client, r.json()["job_id"])
    assert job["type"] == "image" and job["status"] == "pending"
    params = job["params"]
    assert (params["width"], params["height"]) == (96, 64)
    assert params["has_input_image"] is True and params["target_index"] == 3
    assert params["steps"] == 1 and params["cfg"] == 1.0 and params["seed"] == -1
    stored = image_settings.storage_dir / "inputs" / job["job_id"] / "input_image.png"
    assert stored.is_file()


def test_seed_002_defaults(client: TestClient) -> None:
    job = status(client, client.post("/api/generate-image", json={"prompt": "x"}).json()["job_id"])
    # 1216x704 is scaled to the tiny model's limit here (tests/api/test_tiny_model_caps.py).
    assert {k: job["params"][k] for k in ("steps", "cfg", "width", "height")} == {
        "steps": 30, "cfg": 1.0, "width": 128, "height": 64}
    batch = status(client, client.post("/api/batch-images", json={"prompts": ["a"]}).json()["job_id"])
    assert batch["params"]["batch_size"] == 4
    transfer = client.post("/api/transfer-image", json={"prompt": "p", "source_image": b64_png(),
                                                        "target_image": b64_png(color=(0, 0, 0))})
    params = status(client, transfer.json()["job_id"])["params"]
    # transfer_strength: seed 002's 0.7 (1.0 reproduces the reference implementations; docs/IMAGES.md).
    assert (params["transfer_strength"], params["history_index"], params["target_index"]) == (0.7, 16, 1)


def test_batch_seeds_are_drawn_and_recorded(client: TestClient) -> None:
    r = client.post("/api/batch-images", json={"prompts": ["a", "b", "c"], "seeds": [5, -1], "batch_size": 2,
                                               "steps": 1, "width": 64, "height": 64})
    assert r.status_code == 200, r.text
    job = status(client, r.json()["job_id"])
    seeds = job["params"]["seeds"]
    assert len(seeds) == 3 and seeds[0] == 5 and all(0 <= s < 2**32 for s in seeds)
    progress = job["batch_progress"]
    assert progress["total"] == 3 and progress["passes"] == 2 and progress["completed"] == 0
    assert [(i["index"], i["seed"], i["status"]) for i in progress["items"]] == [
        (0, 5, "pending"), (1, seeds[1], "pending"), (2, seeds[2], "pending")]


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/batch-images", {"prompts": ["a"], "batch_size": 9}, "batch_size"),
    ("/api/batch-images", {"prompts": []}, "prompts"),
    ("/api/batch-images", {"prompts": ["a"], "seeds": [1, 2]}, None),
    ("/api/generate-image", {"prompt": "a", "width": 5000}, "width"),
    ("/api/generate-image", {"prompt": "a", "width": 2000}, "width"),  # above this server's IMAGE_MAX_SIDE
    ("/api/generate-image", {"prompt": "a", "steps": 0}, "steps"),
    ("/api/generate-image", {"prompt": "a", "input_image": "not base64!"}, "input_image"),
    ("/api/generate-image", {"prompt": "a", "unknown_knob": 1}, "unknown_knob"),
    ("/api/generate-image", {"prompt": "a", "lora_paths": ["style.safetensors"], "lora_scales": [1, 2]}, None),
    ("/api/transfer-image", {"prompt": "a", "target_image": "AAAA"}, "source_image"),
    ("/api/transfer-image", {"prompt": "a", "transfer_strength": 1.5}, "transfer_strength"),
])
def test_invalid_requests_are_422(client: TestClient, path: str, body: dict[str, Any], field: str | None) -> None:
    r = client.post(path, json=body)
    assert r.status_code == 422, r.text
    if field:
        assert field in str(r.json()["detail"])
    assert client.get("/queue").json()["queue"] == []


def test_oversized_image_is_413(client: TestClient) -> None:
    big = "A" * 400_000
    r = client.post("/api/generate-image", json={"prompt": "a", "input_image": big})
    assert r.status_code == 413


@pytest.mark.parametrize("name", ["/etc/passwd", "../style.safetensors", "sub/../../style.safetensors",
                                  "missing.safetensors", "link.safetensors", "C:\\loras\\style.safetensors",
                                  "style.pt"])
@pytest.mark.parametrize("path", ["/api/generate-image", "/api/batch-images", "/generate"])
def test_every_lora_path_trick_is_refused(client: TestClient, lora_dir: Path, tmp_path: Path,
                                          name: str, path: str) -> None:
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes((lora_dir / "style.safetensors").read_bytes())
    if not (lora_dir / "link.safetensors").exists():
        os.symlink(outside, lora_dir / "link.safetensors")
    body: dict[str, Any] = {"prompt": "a", "lora_paths": [name]}
    if path == "/api/batch-images":
        body = {"prompts": ["a"], "lora_paths": [name]}
    elif path == "/generate":
        body["image"] = b64_png()
    r = client.post(path, json=body)
    assert r.status_code == 422, r.text
    assert "lora_paths" in str(r.json()["detail"])
    ok = client.post(path, json={**body, "lora_paths": ["style.safetensors"]})
    assert ok.status_code == 200, ok.text


def test_loras_are_listed(client: TestClient) -> None:
    body = client.get("/loras").json()
    assert body["lora_dir_configured"] is True
    assert body["loras"] == [{"name": "style.safetensors", "size_bytes": body["loras"][0]["size_bytes"],
                              "format": "diffusers"}]


def test_image_jobs_queue_ahead_of_earlier_video_jobs(client: TestClient) -> None:
    video = client.post("/generate", json={"image": b64_png(), "prompt": "v"}).json()["job_id"]
    image = client.post("/api/generate-image", json={"prompt": "i"}).json()["job_id"]
    assert status(client, image)["queue_position"] == 1
    assert status(client, video)["queue_position"] == 2
    assert [e["job_id"] for e in client.get("/queue").json()["queue"]] == [image, video]


def test_results_of_unfinished_or_unknown_image_jobs(client: TestClient) -> None:
    job = client.post("/api/generate-image", json={"prompt": "i"}).json()["job_id"]
    assert client.get(f"/result/{job}").status_code == 409
    assert client.get(f"/result/{job}/0").status_code == 409
    assert client.get(f"/api/image/{job}").status_code == 409
    assert client.get("/api/image/nope").status_code == 404


def test_batch_takes_one_input_image_for_all_prompts(client: TestClient, image_settings: Any) -> None:
    r = client.post("/api/batch-images", json={"prompts": ["a", "b"], "steps": 1, "width": 64, "height": 64,
                                               "input_image": b64_png(color=(10, 200, 30))})
    assert r.status_code == 200, r.text
    job = status(client, r.json()["job_id"])
    assert job["params"]["has_input_image"] is True and "input_image" not in job["params"]
    with Image.open(image_settings.storage_dir / "inputs" / job["job_id"] / "input_image.png") as stored:
        assert stored.size == (96, 64) and stored.convert("RGB").getpixel((1, 40)) == (10, 200, 30)
    plain = status(client, client.post("/api/batch-images", json={"prompts": ["a"]}).json()["job_id"])
    assert plain["params"]["has_input_image"] is False
    assert not (image_settings.storage_dir / "inputs" / plain["job_id"] / "input_image.png").exists()


def stored_mask(image_settings: Any, job_id: str, name: str) -> Image.Image | None:
    path = image_settings.storage_dir / "inputs" / job_id / f"{name}.png"
    if not path.exists():
        return None
    with Image.open(path) as img:
        return img.convert("L")


def test_transfer_alpha_channels_become_masks(client: TestClient, image_settings: Any) -> None:
    """musubi-tuner's convention: a transparent part of a control image is ignored (mask black)."""
    source = Image.new("RGBA", (64, 64), (200, 40, 40, 255))
    source.paste((0, 0, 0, 0), (0, 0, 32, 64))  # the left half transparent
    body = {"prompt": "p", "steps": 1, "source_image": png_b64(source), "target_image": b64_png()}
    job = status(client, client.post("/api/transfer-image", json=body).json()["job_id"])
    assert job["params"]["has_source_mask"] is True and job["params"]["has_target_mask"] is False
    mask = stored_mask(image_settings, job["job_id"], "source_mask")
    assert mask is not None and mask.size == (64, 64)
    assert mask.getpixel((5, 30)) == 0 and mask.getpixel((60, 30)) == 255
    assert stored_mask(image_settings, job["job_id"], "target_mask") is None  # RGB target: no mask

    # An explicit mask wins over the alpha channel.
    white = png_b64(Image.new("L", (64, 64), 255))
    job = status(client, client.post("/api/transfer-image", json={**body, "source_mask": white}).json()["job_id"])
    mask = stored_mask(image_settings, job["job_id"], "source_mask")
    assert mask is not None and mask.getpixel((5, 30)) == 255
