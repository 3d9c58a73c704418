"""Admission limits on pending jobs: 429 with Retry-After, nothing written, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from framepack_api.api.app import create_app
from framepack_api.settings import Settings

from support.hostile import Target, png_b64

IMG = png_b64()


def make_target(tmp_path: Path, db_url: str, **overrides: object) -> Iterator[Target]:
    settings = Settings(model="tiny", data_dir=tmp_path, database_url=db_url, workers=0, max_resolution=640,
                        admission_retry_after_seconds=7, _env_file=None, **overrides)  # type: ignore[arg-type]
    with TestClient(create_app(settings)) as client:
        target = Target(client, settings)
        yield target
        target.engine.dispose()


@pytest.fixture
def limited(tmp_path: Path, db_url: str) -> Iterator[Target]:
    yield from make_target(tmp_path, db_url, max_pending_jobs=2)


def test_the_server_wide_limit_answers_429_with_retry_after(limited: Target) -> None:
    client = limited.client
    first = client.post("/generate", json={"image": IMG, "steps": 2}, headers={"Idempotency-Key": "one"})
    assert first.status_code == 200
    assert client.post("/api/generate-image", json={"prompt": "a"}).status_code == 200
    before = limited.written()
    for path, body in (("/generate", {"image": IMG}), ("/api/generate-image", {"prompt": "b"}),
                       ("/api/video-generation/generate", {"run_id": 5, "drill_text": "squats"})):
        refused = client.post(path, json=body)
        assert refused.status_code == 429, refused.text
        assert refused.headers["Retry-After"] == "7" and "MAX_PENDING_JOBS" in refused.json()["detail"]
    openai = client.post("/v1/videos", json={"prompt": "a"})
    assert openai.status_code == 429 and openai.headers["Retry-After"] == "7"
    assert openai.json()["error"]["code"] == "rate_limit_exceeded"
    assert limited.written() == before  # no row, no event, no file, no cache entry
    # A retry of an accepted request is not a new job: it is answered, not refused.
    again = client.post("/generate", json={"image": IMG, "steps": 2}, headers={"Idempotency-Key": "one"})
    assert again.status_code == 200 and again.json()["job_id"] == first.json()["job_id"]
    # Only pending jobs count: cancelling one makes room.
    assert client.post(f"/cancel/{first.json()['job_id']}").json()["status"] == "cancelled"
    assert client.post("/api/generate-image", json={"prompt": "c"}).status_code == 200
    assert limited.written()["jobs"] == before["jobs"] + 1


def test_the_per_credential_limit_refuses_that_credential(tmp_path: Path, db_url: str) -> None:
    for target in make_target(tmp_path, db_url, max_pending_jobs_per_credential=1, api_keys=["k1", "k2"]):
        k1 = {"Authorization": "Bearer k1"}
        assert target.client.post("/api/generate-image", json={"prompt": "a"}, headers=k1).status_code == 200
        refused = target.client.post("/api/generate-image", json={"prompt": "b"}, headers=k1)
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "7"
        assert "MAX_PENDING_JOBS_PER_CREDENTIAL" in refused.json()["detail"]
        assert target.written()["jobs"] == 1


def test_another_credential_is_not_counted(tmp_path: Path, db_url: str) -> None:
    for target in make_target(tmp_path, db_url, max_pending_jobs_per_credential=1, api_keys=["k1", "k2"]):
        k1, k2 = {"Authorization": "Bearer k1"}, {"Authorization": "Bearer k2"}
        assert target.client.post("/api/generate-image", json={"prompt": "a"}, headers=k1).status_code == 200
        assert target.client.post("/api/generate-image", json={"prompt": "c"}, headers=k2).status_code == 200
        assert target.client.post("/api/generate-image", json={"prompt": "d"}, headers=k2).status_code == 429
