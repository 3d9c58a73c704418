"""Webhooks: signed deliveries from the outbox, retried, and not lost across a server restart;
targets inside the network refused (issue 11 item 4); one dead receiver delays no other (item 11).

Receivers listen on loopback, which the server may only reach because these tests allow it
(FRAMEPACK_API_OUTBOUND_ALLOW); nothing is ever sent to another address.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from standardwebhooks import Webhook as StandardWebhook
from standardwebhooks import WebhookVerificationError

from framepack_api.jobs.db import create_engine, upgrade, write_tx
from framepack_api.jobs.tables import webhook_deliveries
from framepack_api.net_guard import NetGuard, guarded_async_client
from framepack_api.webhooks import WebhookDispatcher, new_secret, sign_standard, signature_headers, verify

from support.receiver import Receiver
from support.server import FAST, Server, png_bytes

SECRET = "test-secret-123"  # a plain secret, as before Standard Webhooks
STANDARD_SECRET = "whsec_" + base64.b64encode(b"framepack-api standard webhooks test key").decode()
LOOPBACK_OK = {"FRAMEPACK_API_WEBHOOK_SECRET": SECRET, "FRAMEPACK_API_OUTBOUND_ALLOW": "127.0.0.1"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def submit_with_hook(server: Server, url: str, events: str | None = None) -> str:
    data = {**FAST, "webhook_url": url, **({"webhook_events": events} if events else {})}
    r = httpx.post(f"{server.url}/generate", data=data, files={"image": ("i.png", png_bytes(), "image/png")})
    assert r.status_code == 200, r.text
    return str(r.json()["job_id"])


def wait_for_deliveries(receiver: Receiver, n: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(receiver.deliveries) < n and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(receiver.deliveries) >= n, (receiver.deliveries, receiver.failures)


def standard_verifier(secret: str) -> Callable[[dict[str, str], bytes], object]:
    """What a receiver built on the Standard Webhooks library does with each request."""
    hook = StandardWebhook(secret)
    return lambda headers, body: hook.verify(body, headers)


def test_deliveries_verify_with_the_standard_webhooks_library(tmp_path: Path, receiver: Receiver) -> None:
    receiver.verify = standard_verifier(STANDARD_SECRET)
    server = Server(tmp_path / "data", env={**LOOPBACK_OK, "FRAMEPACK_API_WEBHOOK_SECRET": STANDARD_SECRET}).start()
    try:
        job_id = submit_with_hook(server, receiver.url, "status,completed")
        server.wait_for(job_id)
        wait_for_deliveries(receiver, 4)  # status pending, processing, completed + completed
        assert receiver.refused == []
        bodies = [json.loads(d.body) for d in receiver.deliveries]
        assert [b["type"] for b in bodies] == ["job.status", "job.status", "job.status", "job.completed"]
        assert [b["id"] for b in bodies] == sorted(b["id"] for b in bodies)  # one job's events in order
        ids = [d.headers["webhook-id"] for d in receiver.deliveries]
        assert ids == [f"{job_id}_{b['id']}" for b in bodies]
        for d in receiver.deliveries:
            assert d.headers["webhook-signature"].startswith("v1,")
            assert abs(int(d.headers["webhook-timestamp"]) - time.time()) < 120
            assert "X-FramePack-Signature" not in d.headers  # `standard` is the default
            with pytest.raises(WebhookVerificationError):  # another key, or a changed body, does not verify
                StandardWebhook(new_secret()).verify(d.body, d.headers)
            with pytest.raises(WebhookVerificationError):
                StandardWebhook(STANDARD_SECRET).verify(d.body.replace(b"job.", b"jab."), d.headers)
        final = json.loads(receiver.deliveries[-1].body)["data"]
        assert final["job_id"] == job_id and final["status"] == "completed"
    finally:
        server.stop()


def test_a_failed_delivery_is_retried_after_a_server_restart(tmp_path: Path, receiver: Receiver) -> None:
    # `both` (the migration setting) with a plain, pre-Standard secret: old receivers keep verifying the
    # X-FramePack-Signature, new ones verify with the library, given "whsec_" + base64 of the same secret.
    receiver.fail_next = 1
    data = tmp_path / "data"
    env = {**LOOPBACK_OK, "FRAMEPACK_API_WEBHOOK_SIGNATURE": "both"}
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
        as_whsec = "whsec_" + base64.b64encode(SECRET.encode()).decode()
        assert StandardWebhook(as_whsec).verify(body, headers)["data"]["job_id"] == job_id
        # The retry is the same message: receivers drop duplicates by webhook-id.
        assert [a.headers["webhook-id"] for a in receiver.attempts] == [headers["webhook-id"]] * 2
        with sqlite3.connect(data / "framepack-api.db") as db:
            rows = db.execute("SELECT status, attempts, last_error FROM webhook_deliveries").fetchall()
        assert rows == [("delivered", 2, "HTTP 500")]
    finally:
        second.stop()


def test_signature_settings_choose_the_headers() -> None:
    from framepack_api.settings import Settings

    body, timestamp = b'{"id":1}', str(int(time.time()))
    legacy = signature_headers(Settings(webhook_secret=SECRET, webhook_signature="legacy"), "j_1", timestamp, body)
    assert set(legacy) == {"X-FramePack-Timestamp", "X-FramePack-Signature"}
    assert verify(SECRET, timestamp, body, legacy["X-FramePack-Signature"])
    standard = signature_headers(Settings(webhook_secret=STANDARD_SECRET), "j_1", timestamp, body)
    assert set(standard) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    StandardWebhook(STANDARD_SECRET).verify(body, standard)
    # The spec's own example (standardwebhooks.com): this key, id, time and body give this signature.
    assert sign_standard("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                         "1614265330", b'{"test": 2432232314}') == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    with pytest.raises(ValueError, match="base64"):
        Settings(webhook_secret="whsec_not base64!")


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
                        webhook_allowed_hosts=["127.0.0.1", "hooks.example.com"], outbound_allow=["127.0.0.1"])
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


# -- issue 11: targets inside the network, and receivers that never answer --------------------

INSIDE = ["http://127.1/hook", "http://2130706433/hook", "http://0x7f000001/hook", "http://0.0.0.0/hook",
          "http://[::ffff:127.0.0.1]/hook", "http://example.com@127.0.0.1/hook", "http://10.0.0.1/hook",
          "http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/"]


def test_targets_inside_the_network_are_refused_at_submit(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from framepack_api.api.app import create_app
    from framepack_api.settings import Settings

    settings = Settings(data_dir=tmp_path, model="tiny", workers=0, webhook_secret=SECRET)
    with TestClient(create_app(settings)) as api:
        for url in INSIDE:
            r = api.post("/generate", data={**FAST, "webhook_url": url},
                         files={"image": ("i.png", png_bytes(), "image/png")})
            assert r.status_code == 422, (url, r.text)
            detail = r.json()["detail"][0]
            assert detail["loc"] == ["body", "webhook_url"] and "FRAMEPACK_API_OUTBOUND_ALLOW" in detail["msg"], url
        assert api.get("/queue").json() == {"queue": []}
    assert not list((tmp_path / "files").glob("**/*.png"))  # nothing written for a refused request


class SilentReceiver:
    """Accepts connections on loopback and never answers: a dead webhook receiver."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/dead"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.connections:
            conn.close()


def outbox_engine(tmp_path: Path) -> sa.Engine:
    engine = create_engine(f"sqlite:///{tmp_path / 'hooks.db'}")
    upgrade(engine)
    return engine


def enqueue(engine: sa.Engine, job_id: str, url: str) -> int:
    now = time.time()
    with write_tx(engine) as conn:
        return int(conn.execute(webhook_deliveries.insert().values(
            job_id=job_id, event_id=1, url=url, payload={"type": "job.completed", "data": {"job_id": job_id}},
            status="pending", attempts=0, next_attempt_at=now, created_at=now,
        ).returning(webhook_deliveries.c.id)).scalar_one())


def delivery_row(engine: sa.Engine, delivery_id: int) -> tuple[str, int, str | None]:
    with engine.connect() as conn:
        row = conn.execute(sa.select(webhook_deliveries.c.status, webhook_deliveries.c.attempts,
                                     webhook_deliveries.c.last_error)
                           .where(webhook_deliveries.c.id == delivery_id)).one()
    return row.status, row.attempts, row.last_error


async def until(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return predicate()


def test_a_dead_receiver_does_not_hold_back_another(tmp_path: Path, receiver: Receiver) -> None:
    from framepack_api.settings import Settings

    # A timeout far beyond the wait below: the normal delivery must not wait for the dead ones.
    settings = Settings(data_dir=tmp_path, webhook_secret=SECRET, webhook_timeout_seconds=120,
                        webhook_per_host_concurrency=2, outbound_allow=["127.0.0.1"])
    engine = outbox_engine(tmp_path)
    dead = SilentReceiver()

    async def scenario() -> None:
        dispatcher = WebhookDispatcher(engine, settings)
        loop = asyncio.create_task(dispatcher.run_forever(interval=0.05))
        try:
            for n in range(6):
                enqueue(engine, f"dead-{n}", dead.url)
            assert await until(lambda: len(dead.connections) >= 2), "the dead receiver was never tried"
            normal = enqueue(engine, "normal", receiver.url)
            assert await until(lambda: len(receiver.deliveries) == 1), "held back by the dead receiver"
            assert await until(lambda: delivery_row(engine, normal)[0] == "delivered")
            # The bound per host: two connections hang; the other four wait their turn.
            assert len(dead.connections) == 2
        finally:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop

    try:
        asyncio.run(scenario())
    finally:
        dead.close()
        engine.dispose()
    assert json.loads(receiver.deliveries[0].body)["data"]["job_id"] == "normal"


def test_an_unusable_or_refused_url_fails_at_once_with_the_reason(tmp_path: Path, receiver: Receiver) -> None:
    from framepack_api.settings import Settings

    port = receiver.url.split(":")[2].split("/")[0]
    settings = Settings(data_dir=tmp_path, webhook_secret=SECRET, webhook_max_attempts=8)
    engine = outbox_engine(tmp_path)
    # At submit rebind.test was public; now it resolves to loopback, which this server may not reach.
    guard = NetGuard.from_entries([], resolver=lambda host, _port: ["127.0.0.1"])
    broken = enqueue(engine, "a", "http://[::1/hook")
    odd_scheme = enqueue(engine, "b", "gopher://example.test/hook")
    rebound = enqueue(engine, "c", f"http://rebind.test:{port}/hook")

    async def one_round() -> int:
        async with guarded_async_client(guard) as http:
            return await WebhookDispatcher(engine, settings, guard=guard).deliver_due(http)

    try:
        assert asyncio.run(one_round()) == 3
        for delivery_id, reason in ((broken, "unusable URL"), (odd_scheme, "unusable URL"),
                                    (rebound, "refused target")):
            status, attempts, error = delivery_row(engine, delivery_id)
            assert (status, attempts) == ("dead", 1), (delivery_id, error)
            assert error is not None and error.startswith(reason), error
        assert "loopback" in (delivery_row(engine, rebound)[2] or "")
        assert receiver.deliveries == [] and receiver.failures == 0  # nothing reached the receiver
    finally:
        engine.dispose()
