"""/health for load balancers (503 when degraded: no live worker, disk below its floor, database
unreachable; nothing identifying without credentials) and 507 from every submit route while the
disk is below the floor. The real app on SQLite and PostgreSQL; the floor is set above the free
space rather than filling the disk."""

from __future__ import annotations

import base64
import contextlib
import io
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from PIL import Image

from framepack_api.api.app import create_app
from framepack_api.jobs.db import create_engine
from framepack_api.jobs.store import JobStore
from framepack_api.jobs.tables import jobs, training_videos
from framepack_api.settings import Settings

ABOVE_ANY_DISK_MB = 1e12  # an exabyte: always more than is free
KEY = "sk-health"


def png(color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (96, 64), color).save(out, format="PNG")
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def settings_for(db_url: str, data_dir: Path, **overrides: Any) -> Settings:
    return Settings(model="tiny", data_dir=data_dir, database_url=db_url, max_resolution=64,  # type: ignore[call-arg]
                    default_resolution=64,
                    _env_file=None, **overrides)


def every_submit() -> list[tuple[str, dict[str, Any]]]:
    """One valid request per submit route and body kind, in every dialect."""
    image = png()
    return [
        ("/generate", {"files": {"image": ("a.png", image, "image/png")},
                       "data": {"prompt": "multipart", "video_length": "1"}}),
        ("/generate", {"json": {"image": b64(image), "prompt": "json", "video_length": 1}}),
        ("/api/generate-image", {"json": {"prompt": "x", "steps": 1, "width": 64, "height": 64,
                                          "input_image": b64(image)}}),
        ("/api/batch-images", {"json": {"prompts": ["a", "b"], "steps": 1, "width": 64, "height": 64}}),
        ("/api/transfer-image", {"json": {"prompt": "p", "source_image": b64(image),
                                          "target_image": b64(png((0, 0, 0)))}}),
        ("/v1/videos", {"json": {"prompt": "openai json"}}),
        ("/v1/videos", {"data": {"prompt": "openai form"},
                        "files": {"input_reference": ("r.png", image, "image/png")}}),
        ("/api/video-generation/generate", {"json": {"run_id": 7, "drill_text": "squats"}}),
    ]


def rows(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def stored_files(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / "files").rglob("*") if p.is_file()]


def test_every_submit_route_answers_507_with_a_reason_below_the_floor(db_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with TestClient(create_app(settings_for(db_url, data_dir, min_free_disk_mb=ABOVE_ANY_DISK_MB))) as client:
        for path, request in every_submit():
            r = client.post(path, **request)
            assert r.status_code == 507, (path, r.status_code, r.text)
            body = r.json()
            message = body["error"]["message"] if path.startswith("/v1") else body["detail"]
            assert "below the floor" in message and "FRAMEPACK_API_MIN_FREE_DISK_MB" in message, body
            if path.startswith("/v1"):
                assert body["error"]["code"] == "insufficient_storage"
        assert client.get("/queue").json() == {"queue": []}
    engine = create_engine(settings_for(db_url, data_dir).resolved_database_url)
    try:
        assert rows(engine, jobs) == 0 and rows(engine, training_videos) == 0  # nothing half-written
    finally:
        engine.dispose()
    assert stored_files(data_dir) == []

    # The same requests are accepted once the floor is below the free space.
    with TestClient(create_app(settings_for(db_url, data_dir, min_free_disk_mb=1))) as client:
        for path, request in every_submit():
            r = client.post(path, **request)
            assert r.status_code == 200, (path, r.text)
        assert len(client.get("/queue").json()["queue"]) == len(every_submit())


def register_worker(db_url: str, *, state: str = "idle", hostname: str = "gpu-host-17", pid: int = 424242,
                    job_id: str | None = None, device: str | None = None, visible_devices: str | None = None) -> str:
    """A worker's row, written by the same store call a running worker makes."""
    engine = create_engine(db_url)
    try:
        worker_id = f"{hostname}:{pid}:abc123"
        JobStore(engine).worker_seen(worker_id, state=state, pid=pid, hostname=hostname, preset="tiny",
                                     current_job_id=job_id, device=device, visible_devices=visible_devices)
        return worker_id
    finally:
        engine.dispose()


def test_health_is_503_until_a_worker_is_live_then_200(db_url: str, tmp_path: Path) -> None:
    settings = settings_for(db_url, tmp_path / "data", min_free_disk_mb=1)
    with TestClient(create_app(settings)) as client:
        r = client.get("/health")
        assert r.status_code == 503
        assert r.json()["status"] == "degraded" and r.json()["reasons"] == ["no live worker"]
        register_worker(settings.resolved_database_url, state="starting")
        r = client.get("/health")
        assert r.status_code == 503 and r.json()["reasons"] == ["no live worker (1 loading the model)"]
        register_worker(settings.resolved_database_url, state="idle", device="cuda:1 (GPU-5d5ba0d6)",
                        visible_devices="GPU-5d5ba0d6")
        r = client.get("/health")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "ok" and body["reasons"] == [] and body["workers_alive"] == 1
        [worker] = body["workers"]  # the starting row was replaced: same worker id
        assert (worker["device"], worker["cuda_visible_devices"]) == ("cuda:1 (GPU-5d5ba0d6)", "GPU-5d5ba0d6")
        assert body["disk_free_mb"] > body["disk_floor_mb"] == 1


def test_health_is_503_below_the_disk_floor_with_a_live_worker(db_url: str, tmp_path: Path) -> None:
    settings = settings_for(db_url, tmp_path / "data", min_free_disk_mb=ABOVE_ANY_DISK_MB)
    with TestClient(create_app(settings)) as client:
        register_worker(settings.resolved_database_url)
        r = client.get("/health")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "degraded" and body["workers_alive"] == 1
    [reason] = body["reasons"]
    assert "below the floor" in reason and body["disk_free_mb"] < body["disk_floor_mb"]


def test_health_names_no_host_pid_or_job_without_credentials(db_url: str, tmp_path: Path) -> None:
    settings = settings_for(db_url, tmp_path / "data", min_free_disk_mb=1, api_keys=[KEY])
    auth = {"Authorization": f"Bearer {KEY}"}
    with TestClient(create_app(settings)) as client:
        job_id = client.post("/v1/videos", json={"prompt": "mine"}, headers=auth).json()["id"]
        worker_id = register_worker(settings.resolved_database_url, state="busy", job_id=job_id)
        anonymous = client.get("/health")
        wrong_key = client.get("/health", headers={"Authorization": "Bearer sk-wrong"})
        credentialed = client.get("/health", headers=auth)
    secrets = ("gpu-host-17", "424242", job_id, worker_id)
    for r in (anonymous, wrong_key):
        assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["workers_alive"] == 1
        assert r.json()["workers"] == []
        assert not [s for s in secrets if s in r.text], r.text
    assert credentialed.status_code == 200
    [worker] = credentialed.json()["workers"]
    assert (worker["hostname"], worker["pid"], worker["current_job_id"]) == ("gpu-host-17", 424242, job_id)


class LoopbackProxy:
    """TCP forwarder on loopback to the PostgreSQL server, so that the test can cut the database
    off from a running app (as a network failure would) and nothing else."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.closed.is_set():
                client.close()
                return
            server = socket.create_connection(self.upstream)
            with self.lock:
                self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.closed.set()
        # close() alone does not wake a thread blocked in accept(); shutdown() does (Linux).
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self.lock:
            for s in self.sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()


@pytest.fixture
def proxied_pg(pg_url: str) -> Iterator[tuple[str, LoopbackProxy]]:
    url = sa.engine.make_url(pg_url)
    proxy = LoopbackProxy((url.host or "127.0.0.1", url.port or 5432))
    yield url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False), proxy
    proxy.cut()


def test_health_is_503_unavailable_when_the_database_is_unreachable(
        proxied_pg: tuple[str, LoopbackProxy], tmp_path: Path) -> None:
    url, proxy = proxied_pg
    settings = settings_for(url, tmp_path / "data", min_free_disk_mb=1)
    with TestClient(create_app(settings)) as client:
        register_worker(url)
        assert client.get("/health").status_code == 200
        proxy.cut()
        r = client.get("/health")
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["status"] == "unavailable" and body["database"] is False
    assert body["reasons"] == ["database unreachable"] and body["workers"] == []

