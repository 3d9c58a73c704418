"""Webhooks: signed deliveries from the outbox, retried, and not lost across a server restart."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from framepack_api.webhooks import verify

from support.receiver import Receiver
from support.server import FAST, Server, png_bytes

SECRET = "test-secret-123"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def submit_with_hook(server: Server, url: str, events: str | None = None) -> str:
    data = {**FAST, "webhook_url": url, **({"webhook_events": events} if events else {})}
    r = httpx.post(f"{server.url}/generate", data=data, files={"image": ("i.png", png_bytes(), "image/png")})
    assert r.status_code == 202, r.text
    return str(r.json()["job_id"])


def wait_for_deliveries(receiver: Receiver, n: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(receiver.deliveries) < n and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(receiver.deliveries) >= n, (receiver.deliveries, receiver.failures)


def test_signed_deliveries_that_verify(tmp_path: Path, receiver: Receiver) -> None:
    server = Server(tmp_path / "data", env={"FRAMEPACK_API_WEBHOOK_SECRET": SECRET}).start()
    try:
        job_id = submit_with_hook(server, receiver.url, "status,completed")
        server.wait_for(job_id)
        wait_for_deliveries(receiver, 4)  # status pending, processing, completed + completed
        bodies = [json.loads(d.body) for d in receiver.deliveries]
        assert [b["type"] for b in bodies] == ["job.status", "job.status", "job.status", "job.completed"]
        assert [b["id"] for b in bodies] == sorted(b["id"] for b in bodies)  # one job's events in order
        for d in receiver.deliveries:
            assert verify(SECRET, d.headers["X-FramePack-Timestamp"], d.body, d.headers["X-FramePack-Signature"])
            assert not verify("wrong", d.headers["X-FramePack-Timestamp"], d.body,
                              d.headers["X-FramePack-Signature"])
        final = json.loads(receiver.deliveries[-1].body)["data"]
        assert final["job_id"] == job_id and final["status"] == "completed"
    finally:
        server.stop()


def test_a_failed_delivery_is_retried_after_a_server_restart(tmp_path: Path, receiver: Receiver) -> None:
    receiver.fail_next = 1
    data = tmp_path / "data"
    env = {"FRAMEPACK_API_WEBHOOK_SECRET": SECRET}
    first = Server(data, env=env).start()
    job_id = submit_with_hook(first, receiver.url)  # terminal events only
    first.wait_for(job_id)
    assert receiver.got_one.wait(20) and receiver.failures == 1
    first.stop()  # the retry is due in ~1 s; this server will not make it
    assert receiver.deliveries == []

    second = Server(data, env=env).start()
    try:
        wait_for_deliveries(receiver, 1)
        body = receiver.deliveries[0].body
        assert json.loads(body)["type"] == "job.completed"
        headers = receiver.deliveries[0].headers
        assert verify(SECRET, headers["X-FramePack-Timestamp"], body, headers["X-FramePack-Signature"])
        with sqlite3.connect(data / "framepack-api.db") as db:
            rows = db.execute("SELECT status, attempts, last_error FROM webhook_deliveries").fetchall()
        assert rows == [("delivered", 2, "HTTP 500")]
    finally:
        second.stop()


@pytest.mark.parametrize(("url", "problem"), [
    ("ftp://example.com/x", "http"),
    ("not a url", "http"),
    ("http://evil.example.com/hook", "allowed"),
])
def test_bad_webhook_urls_are_refused(tmp_path: Path, url: str, problem: str) -> None:
    from fastapi.testclient import TestClient

    from framepack_api.api.app import create_app
    from framepack_api.settings import Settings

    settings = Settings(data_dir=tmp_path, model="tiny", workers=0, webhook_secret=SECRET,
                        webhook_allowed_hosts=["127.0.0.1", "hooks.example.com"])
    with TestClient(create_app(settings)) as api:
        r = api.post("/generate", data={**FAST, "webhook_url": url},
                     files={"image": ("i.png", png_bytes(), "image/png")})
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["body", "webhook_url"] and problem in r.json()["detail"][0]["msg"]
        bad_kind = api.post("/generate", data={**FAST, "webhook_url": "http://127.0.0.1/x",
                                               "webhook_events": "completed,exploded"},
                            files={"image": ("i.png", png_bytes(), "image/png")})
        assert bad_kind.status_code == 422 and "exploded" in bad_kind.json()["detail"][0]["msg"]
        assert api.get("/queue").json() == {"queue": []}
