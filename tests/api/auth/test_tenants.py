"""Tenants (issue 11 item 3): with API_KEYS=k1,k2 a job belongs to the key that created it.

Each attack of the issue is replayed as k2 against k1's jobs, in every dialect; the answers must be
404 and the rows and files of k1 untouched. An admin key sees and manages everything.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from fastapi.testclient import TestClient

from framepack_api.api.auth import key_id
from framepack_api.jobs.db import alembic_config, create_engine
from framepack_api.jobs.events import read_events
from framepack_api.jobs.store import JobStore, NewJob
from framepack_api.params import JobType

from support.server import FAST, png_bytes

K1, K2, ROOT = {"X-API-Key": "k1"}, {"Authorization": "Bearer k2"}, {"X-API-Key": "root"}
SECRET_PROMPT = "k1's private prompt"


@pytest.fixture
def api(make_client: Callable[..., TestClient]) -> Iterator[TestClient]:
    with make_client(api_keys=["k1", "k2"], admin_api_keys=["root"]) as client:
        yield client


def db_rows(tmp_path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(tmp_path / "framepack-api.db") as db:
        return db.execute(sql).fetchall()


def submit_native(api: TestClient, headers: dict[str, str], key: str | None = None,
                  prompt: str = SECRET_PROMPT) -> str:
    extra = {"Idempotency-Key": key} if key else {}
    r = api.post("/generate", data={**FAST, "prompt": prompt}, headers={**headers, **extra},
                 files={"image": ("i.png", png_bytes(), "image/png")})
    assert r.status_code == 200, r.text
    return str(r.json()["job_id"])


def test_jobs_store_a_key_id_never_the_key(api: TestClient, tmp_path: Path) -> None:
    job_id = submit_native(api, K1)
    assert db_rows(tmp_path, f"SELECT owner FROM jobs WHERE id = '{job_id}'") == [(key_id("k1"),)]
    assert "k1" not in key_id("k1").removeprefix("key:")


def test_another_key_cannot_see_or_cancel_a_native_job(api: TestClient, tmp_path: Path) -> None:
    job_id = submit_native(api, K1)
    for path in (f"/status/{job_id}", f"/result/{job_id}", f"/preview/{job_id}", f"/preview/{job_id}/video",
                 f"/thumbnail/{job_id}", f"/events/{job_id}"):
        r = api.get(path, headers=K2)
        assert r.status_code == 404, (path, r.text)
        assert SECRET_PROMPT not in r.text
    r = api.post(f"/cancel/{job_id}", headers=K2)
    assert r.status_code == 404, r.text
    assert db_rows(tmp_path, f"SELECT status, cancel_requested FROM jobs WHERE id = '{job_id}'") == [("pending", 0)]
    # The owner still sees it, and so does an admin, who may also cancel it.
    assert api.get(f"/status/{job_id}", headers=K1).json()["status"] == "pending"
    assert api.get(f"/thumbnail/{job_id}", headers=K1).status_code == 200
    assert api.post(f"/cancel/{job_id}", headers=ROOT).json()["status"] == "cancelled"
    assert db_rows(tmp_path, f"SELECT status FROM jobs WHERE id = '{job_id}'") == [("cancelled",)]


def test_the_queue_shows_others_only_as_anonymous_positions(api: TestClient) -> None:
    first = submit_native(api, K1)
    mine = submit_native(api, K2, prompt="k2's own")
    seen_by_k2 = api.get("/queue", headers=K2)
    body = seen_by_k2.json()
    assert [e["job_id"] for e in body["queue"]] == [mine]
    assert body["queue"][0]["position"] == 2  # its place in the whole queue: k1's job runs first
    assert body["others"] == [{"status": "pending", "position": 1}]
    assert first not in seen_by_k2.text and SECRET_PROMPT not in seen_by_k2.text
    admin = api.get("/queue", headers=ROOT).json()
    assert {e["job_id"] for e in admin["queue"]} == {first, mine} and "others" not in admin


def test_idempotency_keys_are_per_credential(api: TestClient, tmp_path: Path) -> None:
    k1_job = submit_native(api, K1, key="shared-key")
    k2_job = submit_native(api, K2, key="shared-key")  # the replay attack: must not receive k1's job
    assert k2_job != k1_job
    assert submit_native(api, K2, key="shared-key") == k2_job  # a retry by k2 still replays k2's own
    owners = dict(db_rows(tmp_path, "SELECT id, owner FROM jobs WHERE idempotency_key = 'shared-key'"))
    assert owners == {k1_job: key_id("k1"), k2_job: key_id("k2")}


def test_openai_videos_are_private(api: TestClient, tmp_path: Path) -> None:
    video = api.post("/v1/videos", json={"prompt": SECRET_PROMPT, "seconds": "1"}, headers=K1).json()
    vid = video["id"]
    own = api.post("/v1/videos", json={"prompt": "k2's", "seconds": "1"}, headers=K2).json()["id"]
    listed = api.get("/v1/videos", headers=K2).json()
    assert [v["id"] for v in listed["data"]] == [own]
    bad_cursor = api.get("/v1/videos", params={"after": vid}, headers=K2)
    assert bad_cursor.status_code == 400 and SECRET_PROMPT not in bad_cursor.text
    for r in (api.get(f"/v1/videos/{vid}", headers=K2), api.get(f"/v1/videos/{vid}/content", headers=K2),
              api.delete(f"/v1/videos/{vid}", headers=K2)):
        assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error", r.text
    assert db_rows(tmp_path, f"SELECT status FROM jobs WHERE id = '{vid}'") == [("pending",)]
    assert db_rows(tmp_path, f"SELECT count(*) FROM openai_videos WHERE job_id = '{vid}'") == [(1,)]
    assert api.get(f"/v1/videos/{vid}", headers=K1).json()["prompt"] == SECRET_PROMPT
    assert {v["id"] for v in api.get("/v1/videos", headers=ROOT).json()["data"]} == {vid, own}
    assert api.delete(f"/v1/videos/{vid}", headers=ROOT).json()["deleted"] is True


def test_training_runs_are_per_credential(api: TestClient, tmp_path: Path) -> None:
    base = "/api/video-generation"
    k1_run = api.post(f"{base}/generate", json={"run_id": 1, "drill_text": "k1 drill"}, headers=K1)
    assert k1_run.status_code == 200, k1_run.text
    assert api.get(f"{base}/status/1", headers=K2).status_code == 404
    assert api.delete(f"{base}/cache/1", headers=K2).json() == {"run_id": 1, "deleted": False}
    assert api.get(f"{base}/status/1", headers=K1).json()["status"] == "pending"
    # k2's run 1 is its own video, not k1's, and clearing it leaves k1's alone.
    assert api.post(f"{base}/generate", json={"run_id": 1, "drill_text": "k2 drill"}, headers=K2).status_code == 200
    rows = dict(db_rows(tmp_path, "SELECT owner, job_id FROM training_videos WHERE run_id = '1'"))
    assert set(rows) == {key_id("k1"), key_id("k2")} and rows[key_id("k1")] != rows[key_id("k2")]
    assert api.delete(f"{base}/cache/1", headers=K2).json()["deleted"] is True
    assert db_rows(tmp_path, "SELECT owner FROM training_videos") == [(key_id("k1"),)]
    assert api.get(f"{base}/", headers=K2).json()["cached_runs"] == 0


def test_image_jobs_are_private(api: TestClient) -> None:
    r = api.post("/api/generate-image", json={"prompt": SECRET_PROMPT, "width": 64, "height": 64}, headers=K1)
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]
    for path in (f"/api/image/{job_id}", f"/result/{job_id}/0", f"/status/{job_id}"):
        assert api.get(path, headers=K2).status_code == 404, path
    assert api.get(f"/api/image/{job_id}", headers=K1).status_code == 409  # not finished: it is there


def test_auth_off_keeps_one_shared_tenant(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    with make_client() as api:
        job_id = submit_native(api, {}, key="k")
        assert submit_native(api, {}, key="k") == job_id
        assert [e["job_id"] for e in api.get("/queue").json()["queue"]] == [job_id]
        assert "others" not in api.get("/queue").json()
    assert db_rows(tmp_path, "SELECT owner FROM jobs") == [("",)]


def test_store_scoping_and_event_log_on_both_databases(engine: sa.Engine) -> None:
    store = JobStore(engine)
    a, _ = store.submit(NewJob(type=JobType.video, params={"prompt": "a"}, inputs={}, owner="key:a",
                               idempotency_key="same"))
    b, _ = store.submit(NewJob(type=JobType.video, params={"prompt": "b"}, inputs={}, owner="key:b",
                               idempotency_key="same"))
    assert a.id != b.id and (a.owner, b.owner) == ("key:a", "key:b")
    assert store.submit(NewJob(type=JobType.video, params={}, inputs={}, owner="key:b",
                               idempotency_key="same"))[0].id == b.id
    assert [j.id for j in store.list_jobs(owner="key:a")] == [a.id]
    assert {j.id for j in store.list_jobs()} == {a.id, b.id}
    assert {e.job_id for e in read_events(engine, owner="key:a")} == {a.id}
    assert {e.job_id for e in read_events(engine)} == {a.id, b.id}


def test_migration_0004_keeps_existing_rows(db_url: str) -> None:
    engine = create_engine(db_url)
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    try:
        with engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0003")
            conn.exec_driver_sql(
                "INSERT INTO jobs (id, type, status, params, inputs, created_at, updated_at, idempotency_key) "
                "VALUES ('old', 'video', 'pending', '{}', '{}', 1.0, 1.0, 'k')")
            conn.exec_driver_sql("INSERT INTO training_videos (run_id, job_id, drill_text, created_at) "
                                 "VALUES ('7', 'old', 'drill', 1.0)")
            conn.commit()
            command.upgrade(cfg, "0004")
            assert conn.exec_driver_sql("SELECT owner, idempotency_key FROM jobs").all() == [("", "k")]
            assert conn.exec_driver_sql("SELECT owner, run_id, job_id FROM training_videos").all() == [
                ("", "7", "old")]
            conn.commit()
            command.downgrade(cfg, "0003")
            assert conn.exec_driver_sql("SELECT run_id FROM training_videos").all() == [("7",)]
            conn.commit()
    finally:
        engine.dispose()


def test_the_event_stream_carries_only_the_callers_jobs(api: TestClient) -> None:
    first = submit_native(api, K1)
    mine = submit_native(api, K2, prompt="k2's own")
    # Replayed from the start, k1's events (older) would come first if the stream were not scoped.
    with api.stream("GET", "/events", headers={**K2, "Last-Event-ID": "0"}) as stream:
        data = next(line for line in stream.iter_lines() if line.startswith("data:"))
    assert json.loads(data.removeprefix("data:"))["job_id"] == mine != first
