"""Webhook deliveries from the outbox table: signed JSON POSTs, retried with backoff.

The worker only inserts outbox rows (in the transaction of the event), so a slow or dead receiver
never slows sampling; the API process delivers them, and a restart resumes where it stopped.

Signature: ``X-FramePack-Signature: sha256=<hex>`` is HMAC-SHA256 with the server's
``WEBHOOK_SECRET`` over ``f"{timestamp}.".encode() + body``, where ``timestamp`` is the
``X-FramePack-Timestamp`` header (unix seconds). Receivers should also reject old timestamps.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.engine import Engine

from framepack_api.errors import InvalidInput
from framepack_api.jobs.db import write_tx
from framepack_api.jobs.events import EVENT_KINDS
from framepack_api.jobs.tables import webhook_deliveries as wd
from framepack_api.settings import Settings

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 300.0
BATCH = 20


def validate_webhook_url(url: str, settings: Settings) -> str:
    if not settings.webhook_secret:
        raise InvalidInput("webhook_url", "webhooks need FRAMEPACK_API_WEBHOOK_SECRET set on the server")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("webhook_url", "must be an absolute http:// or https:// URL")
    allowed = settings.webhook_allowed_hosts
    if allowed and parts.hostname not in allowed:
        raise InvalidInput("webhook_url", f"host {parts.hostname!r} is not in this server's allowed "
                                          f"webhook hosts ({', '.join(allowed)})")
    return url


def parse_webhook_events(value: Any) -> list[str] | None:
    """A JSON list or a comma-separated string of event kinds; None means terminal events only."""
    if value in (None, ""):
        return None
    if isinstance(value, str):
        try:
            kinds = json.loads(value) if value.strip().startswith("[") else value.split(",")
        except (ValueError, RecursionError):
            raise InvalidInput("webhook_events", f"not a valid JSON list: {value[:80]}") from None
        if not isinstance(kinds, list):
            raise InvalidInput("webhook_events", "must be a list of event kinds")
    elif isinstance(value, list):
        kinds = value
    else:
        raise InvalidInput("webhook_events", "must be a list of event kinds")
    cleaned = [str(k).strip() for k in kinds if str(k).strip()]
    unknown = sorted(set(cleaned) - EVENT_KINDS)
    if unknown:
        raise InvalidInput("webhook_events", f"unknown kinds {unknown}; choose from {sorted(EVENT_KINDS)}")
    return cleaned or None


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def backoff(attempts: int) -> float:
    return float(min(MAX_BACKOFF_SECONDS, 2 ** max(attempts - 1, 0)))


class WebhookDispatcher:
    def __init__(self, engine: Engine, settings: Settings, clock: Any = time.time) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock

    async def run_forever(self, interval: float = 0.5) -> None:
        async with httpx.AsyncClient(timeout=self.settings.webhook_timeout_seconds) as http:
            while True:
                try:
                    await self.deliver_due(http)
                except Exception:  # the database may be briefly unavailable; next round
                    log.exception("webhook round failed")
                await asyncio.sleep(interval)

    async def deliver_due(self, http: httpx.AsyncClient) -> int:
        due = await run_in_threadpool(self._claim_due)
        await asyncio.gather(*(self._deliver(http, d) for d in due))
        return len(due)

    def _claim_due(self) -> list[dict[str, Any]]:
        """Take due rows by pushing their next attempt past the timeout (a lease), so that two
        API processes never send the same delivery at once."""
        now = self.clock()
        lease = now + self.settings.webhook_timeout_seconds + 5
        older = wd.alias("older")
        # One job's deliveries go out one at a time, in event order: a row waits while an earlier
        # row of the same job is still pending (retrying). Different jobs go out concurrently.
        earlier = sa.select(sa.literal(1)).select_from(older).where(
            older.c.job_id == wd.c.job_id, older.c.status == "pending", older.c.id < wd.c.id)
        with write_tx(self.engine) as conn:
            rows = conn.execute(
                sa.select(wd).where(wd.c.status == "pending", wd.c.next_attempt_at <= now, ~sa.exists(earlier))
                .order_by(wd.c.id).limit(BATCH)
            ).all()
            claimed = []
            for row in rows:
                n = conn.execute(wd.update().where(wd.c.id == row.id, wd.c.next_attempt_at == row.next_attempt_at)
                                 .values(next_attempt_at=lease)).rowcount
                if n == 1:
                    claimed.append(dict(row._mapping))
        return claimed

    async def _deliver(self, http: httpx.AsyncClient, delivery: dict[str, Any]) -> None:
        body = json.dumps(delivery["payload"], separators=(",", ":"), sort_keys=True).encode()
        timestamp = str(int(self.clock()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "framepack-api-webhooks",
            "X-FramePack-Event": str(delivery["payload"].get("type", "")),
            "X-FramePack-Delivery": str(delivery["id"]),
            "X-FramePack-Timestamp": timestamp,
            "X-FramePack-Signature": sign(self.settings.webhook_secret, timestamp, body),
        }
        error: str | None = None
        try:
            response = await http.post(delivery["url"], content=body, headers=headers)
            if response.status_code >= 300:
                error = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{exc.__class__.__name__}: {exc}"
        await run_in_threadpool(self._record, delivery, error)

    def _record(self, delivery: dict[str, Any], error: str | None) -> None:
        now = self.clock()
        attempts = delivery["attempts"] + 1
        if error is None:
            values: dict[str, Any] = {"status": "delivered", "delivered_at": now, "attempts": attempts}
        elif attempts >= self.settings.webhook_max_attempts:
            values = {"status": "dead", "attempts": attempts, "last_error": error}
            log.warning("webhook %s to %s given up after %d attempts: %s",
                        delivery["id"], delivery["url"], attempts, error)
        else:
            values = {"attempts": attempts, "last_error": error, "next_attempt_at": now + backoff(attempts)}
        with write_tx(self.engine) as conn:
            conn.execute(wd.update().where(wd.c.id == delivery["id"]).values(**values))
