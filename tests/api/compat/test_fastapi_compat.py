"""Issue 13: a client written for FramePack-FastAPI works here unchanged (in-process app, no worker).

The jobs here never run: a "processing" job is one claimed through the real store, as a worker would.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from framepack_api.api.deps import AppState
from framepack_api.jobs.store import Heartbeat

from support.server import FAST, png_bytes

K1, K2, ROOT = {"X-API-Key": "k1"}, {"X-API-Key": "k2"}, {"X-API-Key": "root"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def submit(client: TestClient, headers: dict[str, str] | None = None, image: bytes | None = None) -> str:
    r = client.post("/generate", data=FAST, headers=headers or {},
                    files={"image": ("i.png", image or png_bytes(), "image/png")})
    assert r.status_code == 200, r.text
    return str(r.json()["job_id"])


def app_state(client: TestClient) -> AppState:
    state: AppState = client.app.state.framepack  # type: ignore[attr-defined]
    return state


@pytest.fixture
def tenants(make_client: Callable[..., TestClient]) -> Iterator[TestClient]:
    with make_client(api_keys=["k1", "k2"], admin_api_keys=["root"]) as client:
        yield client


def test_every_submit_path_answers_200_with_id_message_and_location(api: TestClient) -> None:
    subject, reference = b64(png_bytes((96, 64))), b64(png_bytes((96, 64), color=(0, 0, 200)))
    requests: list[tuple[str, dict[str, Any]]] = [
        ("/api/generate-image", {"json": {"prompt": "a cat", "steps": 1, "width": 64, "height": 64}}),
        ("/api/batch-images", {"json": {"prompts": ["a", "b"], "steps": 1, "width": 64, "height": 64}}),
        ("/api/transfer-image", {"json": {"prompt": "p", "source_image": reference, "target_image": subject,
                                          "steps": 1, "width": 64, "height": 64}}),
        ("/generate", {"data": FAST, "files": {"image": ("i.png", png_bytes(), "image/png")}}),
        ("/generate", {"json": {**FAST, "image": subject}}),
    ]
    for path, kwargs in requests:
        r = api.post(path, **kwargs)
        assert r.status_code == 200, (path, r.text)
        body = r.json()
        assert set(body) == {"job_id", "status", "message"}, body
        assert body["status"] == "pending" and body["message"] == "Job queued"
        assert r.headers["location"] == f"/status/{body['job_id']}"
        assert api.get(f"/status/{body['job_id']}").json()["status"] == "pending"


def test_idempotent_replay_is_200_with_the_same_job_and_says_so(api: TestClient) -> None:
    headers = {"Idempotency-Key": "fastapi-compat-1"}
    first = api.post("/generate", data=FAST, headers=headers, files={"image": ("i.png", png_bytes(), "image/png")})
    again = api.post("/generate", data=FAST, headers=headers, files={"image": ("i.png", png_bytes(), "image/png")})
    assert first.status_code == again.status_code == 200
    assert first.json()["job_id"] == again.json()["job_id"]
    assert first.json()["message"] == "Job queued"
    assert "Idempotency-Key" in again.json()["message"]
    assert api.get("/queue").json()["queue"][0]["job_id"] == first.json()["job_id"]
    assert len(api.get("/queue").json()["queue"]) == 1


def test_openapi_declares_200_for_the_submit_paths(api: TestClient) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    for path in ("/generate", "/api/generate-image", "/api/batch-images", "/api/transfer-image"):
        responses = paths[path]["post"]["responses"]
        assert "200" in responses and "202" not in responses, (path, sorted(responses))
        schema = responses["200"]["content"]["application/json"]["schema"]["$ref"]
        assert schema.endswith("/JobAccepted")
    for path in ("/download/video/{job_id}", "/input_image/{job_id}", "/worker/status", "/stream/status/{job_id}"):
        assert "get" in paths[path], path


def test_status_has_fastapi_progress_fields_beside_the_native_ones(api: TestClient) -> None:
    job_id = submit(api)
    pending = api.get(f"/status/{job_id}").json()
    assert (pending["progress_step"], pending["progress_total"], pending["progress_info"]) == (None, None, None)
    store = app_state(api).store
    claimed = store.claim("w-compat")
    assert claimed is not None and claimed.id == job_id
    assert store.heartbeat(claimed, progress=40.0, step=3, total_steps=8, section=1, total_sections=2,
                           message="Sampling 3/8") is Heartbeat.ok
    running = api.get(f"/status/{job_id}").json()
    assert running["status"] == "processing"
    assert (running["step"], running["total_steps"], running["message"]) == (3, 8, "Sampling 3/8")
    assert (running["progress_step"], running["progress_total"], running["progress_info"]) == (3, 8, "Sampling 3/8")


def test_input_image_is_the_start_image_and_scoped_to_its_owner(tenants: TestClient) -> None:
    sent = png_bytes((96, 64))
    job_id = submit(tenants, K1, image=sent)
    r = tenants.get(f"/input_image/{job_id}", headers=K1)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    got = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
    assert np.array_equal(got, np.asarray(Image.open(io.BytesIO(sent)).convert("RGB")))
    assert tenants.get(f"/input_image/{job_id}", headers=K2).status_code == 404
    assert tenants.get(f"/input_image/{job_id}", headers=ROOT).content == r.content
    assert tenants.get(f"/input_image/{job_id}").status_code == 401
    assert tenants.get("/input_image/no-such-job", headers=K1).status_code == 404


def test_input_image_of_a_text_to_image_job_is_404(api: TestClient) -> None:
    job_id = api.post("/api/generate-image", json={"prompt": "x", "steps": 1}).json()["job_id"]
    r = api.get(f"/input_image/{job_id}")
    assert r.status_code == 404 and job_id in r.json()["detail"]


def test_download_video_refuses_what_result_refuses(tenants: TestClient) -> None:
    job_id = submit(tenants, K1)
    pending = tenants.get(f"/download/video/{job_id}", headers=K1)
    assert pending.status_code == 409 and pending.json()["status"] == "pending"
    assert tenants.get(f"/download/video/{job_id}", headers=K2).status_code == 404
    assert tenants.get("/download/video/no-such-job", headers=K1).status_code == 404
    image_job = tenants.post("/api/generate-image", json={"prompt": "x"}, headers=K1).json()["job_id"]
    assert tenants.get(f"/download/video/{image_job}", headers=K1).status_code == 404


def test_worker_status_follows_running_jobs_of_the_caller(tenants: TestClient) -> None:
    idle = tenants.get("/worker/status", headers=K1).json()
    assert idle == {"is_running": False, "processing_job_id": None, "processing_job_ids": [], "workers_alive": 0}
    job_id = submit(tenants, K1)
    store = app_state(tenants).store
    claimed = store.claim("w-compat")
    assert claimed is not None and claimed.id == job_id
    mine = tenants.get("/worker/status", headers=K1).json()
    assert mine["is_running"] is True and mine["processing_job_id"] == job_id
    assert mine["processing_job_ids"] == [job_id]
    # Another tenant learns nothing about k1's job; the admin sees it.
    theirs = tenants.get("/worker/status", headers=K2).json()
    assert theirs["is_running"] is False and theirs["processing_job_id"] is None
    assert tenants.get("/worker/status", headers=ROOT).json()["processing_job_id"] == job_id
    assert tenants.get("/worker/status").status_code == 401


def test_stream_status_is_404_for_another_tenants_job(tenants: TestClient) -> None:
    job_id = submit(tenants, K1)
    r = tenants.get(f"/stream/status/{job_id}", headers=K2)
    assert r.status_code == 404 and job_id in r.json()["detail"]
