"""/ready: 200 only when the database is reachable and a live worker takes each job type (or the one
asked with ?job_type=), else 503 with reasons. The real app on SQLite and PostgreSQL; worker rows are
written by the same store call a running worker makes."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.test_health import LoopbackProxy, register_worker, settings_for
from framepack_api.api.app import create_app

LOCAL_TYPES = {"video", "image", "image_batch", "image_transfer"}


def test_ready_needs_a_live_worker_for_every_job_type(db_url: str, tmp_path: Path) -> None:
    settings = settings_for(db_url, tmp_path / "data", min_free_disk_mb=1)
    with TestClient(create_app(settings)) as client:
        r = client.get("/ready")
        assert r.status_code == 503
        body = r.json()
        assert body["ready"] is False and body["database"] is True
        assert set(body["job_types"]) == LOCAL_TYPES and set(body["job_types"].values()) == {0}
        assert body["reasons"] == ["no live worker for video, image, image_batch, image_transfer"]
        register_worker(settings.resolved_database_url, state="starting")  # still loading: not ready
        assert client.get("/ready").status_code == 503
        register_worker(settings.resolved_database_url, state="busy", hostname="gpu-2")
        r = client.get("/ready")
        assert r.status_code == 200, r.text
        assert r.json() == {"ready": True, "reasons": [], "database": True,
                            "job_types": dict.fromkeys(["video", "image", "image_batch", "image_transfer"], 1)}
        r = client.get("/ready", params={"job_type": "image"})
        assert r.status_code == 200 and r.json()["job_types"] == {"image": 1}


def test_ready_job_type_query_is_checked(sqlite_url: str, tmp_path: Path) -> None:
    settings = settings_for(sqlite_url, tmp_path / "data", min_free_disk_mb=1)
    with TestClient(create_app(settings)) as client:
        register_worker(settings.resolved_database_url)
        r = client.get("/ready", params={"job_type": "teleport"})
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["query", "job_type"]
        # remote_video jobs exist only with a remote backend: a worker here cannot be handed one
        r = client.get("/ready", params={"job_type": "remote_video"})
        assert r.status_code == 503
        assert r.json()["job_types"] == {"remote_video": 0}
        assert "not accepted here" in r.json()["reasons"][0]


def test_ready_is_503_below_the_disk_floor_and_open_without_credentials(sqlite_url: str, tmp_path: Path) -> None:
    settings = settings_for(sqlite_url, tmp_path / "data", min_free_disk_mb=1e12, api_keys=["sk-ready"])
    with TestClient(create_app(settings)) as client:
        register_worker(settings.resolved_database_url)
        r = client.get("/ready")  # no credentials: a probe must not need them
        assert r.status_code == 503
        assert r.json()["job_types"]["video"] == 1
        assert any("free" in reason for reason in r.json()["reasons"]), r.json()


def test_ready_is_503_when_the_database_is_unreachable(pg_url: str, tmp_path: Path) -> None:
    url = sa.engine.make_url(pg_url)
    proxy = LoopbackProxy((url.host or "127.0.0.1", url.port or 5432))
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    try:
        settings = settings_for(proxied, tmp_path / "data", min_free_disk_mb=1)
        with TestClient(create_app(settings)) as client:
            register_worker(proxied)
            assert client.get("/ready").status_code == 200
            proxy.cut()
            r = client.get("/ready")
        assert r.status_code == 503
        assert r.json()["database"] is False and r.json()["reasons"][0] == "database unreachable"
    finally:
        proxy.cut()
