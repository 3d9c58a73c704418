"""Webhook deliveries from the outbox table: signed JSON POSTs, retried with backoff.

The worker only inserts outbox rows (in the transaction of the event), so a slow or dead receiver
never slows sampling; the API process delivers them, and a restart resumes where it stopped.

Deliveries run concurrently, at most ``webhook_per_host_concurrency`` to one host and
``webhook_concurrency`` in all, so a slow or dead receiver only delays its own deliveries. Targets
pass net_guard's rules at submit and again at connect time; a refused or unparseable URL fails its
delivery at once with the reason (retrying cannot fix it).

Signatures (``WEBHOOK_SIGNATURE``):

- ``standard`` (default): Standard Webhooks (standardwebhooks.com), so receivers verify with any of
  its libraries: ``webhook-id`` (the same on every retry of a delivery), ``webhook-timestamp`` (unix
  seconds of this attempt) and ``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``.
  The key is the base64 part of a ``whsec_<base64>`` secret; any other secret is used as its UTF-8
  bytes (such a receiver passes ``"whsec_" + base64(secret)`` to its library).
- ``legacy``: ``X-FramePack-Signature: sha256=<hex>``, HMAC-SHA256 with the secret's UTF-8 bytes over
  ``f"{timestamp}.".encode() + body`` (``X-FramePack-Timestamp``), as before Standard Webhooks.
- ``both``: both sets of headers, while receivers migrate.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import math
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.engine import Engine

from framepack_api.errors import InvalidInput
from framepack_api.jobs.db import read_tx, write_tx
from framepack_api.jobs.events import EVENT_KINDS
from framepack_api.jobs.tables import webhook_deliveries as wd
from framepack_api.net_guard import NetGuard, blocked, guarded_async_client
from framepack_api.settings import Settings

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 300.0
# Due rows read per round beyond the free capacity, so that rows of busy hosts do not hide others.
SCAN_FACTOR = 4


def validate_webhook_url(url: str, settings: Settings, guard: NetGuard | None = None) -> str:
    """The URL as it will be used, or InvalidInput naming ``webhook_url``. Resolves the host: blocking."""
    if not settings.webhook_secret:
        raise InvalidInput("webhook_url", "webhooks need FRAMEPACK_API_WEBHOOK_SECRET set on the server")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("webhook_url", "must be an absolute http:// or https:// URL")
    allowed = settings.webhook_allowed_hosts
    if allowed and parts.hostname not in allowed:
        raise InvalidInput("webhook_url", f"host {parts.hostname!r} is not in this server's allowed "
                                          f"webhook hosts ({', '.join(allowed)})")
    guard = guard or NetGuard.from_entries(settings.outbound_allow)
    try:
        return guard.check_url(url)
    except ValueError as exc:
        raise InvalidInput("webhook_url", str(exc)) from None


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


SECRET_PREFIX = "whsec_"


def signing_key(secret: str) -> bytes:
    """The HMAC key of Standard Webhooks signatures: the base64 part of ``whsec_<base64>``, else the
    secret's own UTF-8 bytes. ValueError for a ``whsec_`` secret that is not base64."""
    if not secret.startswith(SECRET_PREFIX):
        return secret.encode()
    encoded = secret[len(SECRET_PREFIX):]
    try:
        # Standard Webhooks libraries accept unpadded secrets; so does this.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a whsec_ secret must be followed by base64") from None
    if not key:
        raise ValueError("a whsec_ secret must not be empty")
    return key


def new_secret() -> str:
    """A fresh ``whsec_`` secret with a 256-bit key."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign_standard(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64 HMAC-SHA256 of ``{id}.{timestamp}.{body}``."""
    mac = hmac.new(signing_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The legacy ``X-FramePack-Signature`` value."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """Check a legacy ``X-FramePack-Signature``."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def signature_headers(settings: Settings, msg_id: str, timestamp: str, body: bytes) -> dict[str, str]:
    """The signature headers that ``WEBHOOK_SIGNATURE`` asks for."""
    headers: dict[str, str] = {}
    if settings.webhook_signature in ("standard", "both"):
        headers["webhook-id"] = msg_id
        headers["webhook-timestamp"] = timestamp
        headers["webhook-signature"] = sign_standard(settings.webhook_secret, msg_id, timestamp, body)
    if settings.webhook_signature in ("legacy", "both"):
        headers["X-FramePack-Timestamp"] = timestamp
        headers["X-FramePack-Signature"] = sign(settings.webhook_secret, timestamp, body)
    return headers


def message_id(delivery: dict[str, Any]) -> str:
    """``webhook-id``: one per event and target, the same on every retry, so receivers can drop
    duplicates. The job id (a UUID) makes it unique across servers; the event id within the job."""
    return f"{delivery['job_id']}_{delivery['event_id']}"


def backoff(attempts: int) -> float:
    return float(min(MAX_BACKOFF_SECONDS, 2 ** max(attempts - 1, 0)))


def host_key(url: str) -> str:
    """Deliveries are bounded per this key: scheme, host and port as the HTTP client sees them."""
    try:
        parsed = httpx.URL(url)
        return f"{parsed.scheme}://{parsed.host}:{parsed.port or ''}"
    except (httpx.InvalidURL, TypeError, ValueError):
        return url


def _origin(url: str) -> str:
    """The URL up to its path: a prefix that every stored URL of that spelling of the host shares."""
    scheme, sep, rest = url.partition("://")
    return scheme + sep + rest.split("/", 1)[0] + "/"


class _Permanent(Exception):
    """A delivery that can never succeed: fail it now instead of retrying."""


class WebhookDispatcher:
    def __init__(self, engine: Engine, settings: Settings, clock: Any = time.time,
                 guard: NetGuard | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.guard = guard or NetGuard.from_entries(settings.outbound_allow)
        self.in_flight: dict[int, str] = {}  # delivery id -> host key
        self.per_host: dict[str, int] = {}
        self.origins: dict[str, set[str]] = {}  # host key -> URL prefixes in flight
        self.tasks: set[asyncio.Task[None]] = set()
        self.woken = asyncio.Event()  # a new outbox row (notify.py) or a finished delivery

    def wake(self) -> None:
        """From the event loop's thread (the listener uses call_soon_threadsafe)."""
        self.woken.set()

    async def run_forever(self, interval: float = 0.5, push_live: Callable[[], bool] = lambda: False) -> None:
        """Rounds on every wake-up and when the next retry is due; without push also every ``interval``,
        with push every ``push_fallback_poll_seconds`` at the longest."""
        async with guarded_async_client(self.guard, timeout=self.settings.webhook_timeout_seconds) as http:
            try:
                while True:
                    self.woken.clear()
                    wait = interval
                    try:
                        await self.start_due(http)
                        wait = await run_in_threadpool(self._seconds_until_next_retry)
                    except Exception:  # the database may be briefly unavailable; next round
                        log.exception("webhook round failed")
                    longest = self.settings.push_fallback_poll_seconds if push_live() else interval
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.woken.wait(), min(max(wait, 0.01), longest))
            finally:
                for task in self.tasks:
                    task.cancel()
                await asyncio.gather(*self.tasks, return_exceptions=True)

    async def start_due(self, http: httpx.AsyncClient) -> int:
        """Claim what is due and has room, and start each delivery without waiting for it."""
        room = self.settings.webhook_concurrency - len(self.in_flight)
        if room <= 0:
            return 0
        due = await run_in_threadpool(self._claim_due, room)
        for delivery in due:
            self._track(delivery)
            task = asyncio.create_task(self._deliver(http, delivery))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            task.add_done_callback(lambda _task: self.wake())  # room again, or the job's next row may go
        return len(due)

    def _seconds_until_next_retry(self) -> float:
        """Until the earliest pending row that is not due yet (a retry, or one in flight) becomes due."""
        now = self.clock()
        with read_tx(self.engine) as conn:
            first = conn.execute(sa.select(sa.func.min(wd.c.next_attempt_at))
                                 .where(wd.c.status == "pending", wd.c.next_attempt_at > now)).scalar_one()
        return math.inf if first is None else float(first) - now

    async def deliver_due(self, http: httpx.AsyncClient) -> int:
        """One round, waiting for its deliveries (tests and tools)."""
        started = await self.start_due(http)
        await asyncio.gather(*list(self.tasks))
        return started

    def _track(self, delivery: dict[str, Any]) -> None:
        key = host_key(delivery["url"])
        self.in_flight[delivery["id"]] = key
        self.per_host[key] = self.per_host.get(key, 0) + 1
        self.origins.setdefault(key, set()).add(_origin(delivery["url"]))

    def _untrack(self, delivery: dict[str, Any]) -> None:
        key = self.in_flight.pop(delivery["id"], None)
        if key is None:
            return
        self.per_host[key] -= 1
        if self.per_host[key] <= 0:
            del self.per_host[key]
            self.origins.pop(key, None)

    def _claim_due(self, room: int) -> list[dict[str, Any]]:
        """Take due rows by pushing their next attempt past the timeout (a lease), so that two
        API processes never send the same delivery at once. Hosts already at their bound are
        skipped in SQL, so a backlog for one dead receiver cannot fill every round."""
        now = self.clock()
        lease = now + self.settings.webhook_timeout_seconds + 5
        per_host = self.settings.webhook_per_host_concurrency
        full = [o for key, n in self.per_host.items() if n >= per_host for o in self.origins.get(key, ())]
        older = wd.alias("older")
        # One job's deliveries go out one at a time, in event order: a row waits while an earlier
        # row of the same job is still pending (retrying). Different jobs go out concurrently.
        earlier = sa.select(sa.literal(1)).select_from(older).where(
            older.c.job_id == wd.c.job_id, older.c.status == "pending", older.c.id < wd.c.id)
        where = [wd.c.status == "pending", wd.c.next_attempt_at <= now, ~sa.exists(earlier)]
        if full:
            where.append(~sa.or_(*(wd.c.url.startswith(o, autoescape=True) for o in full)))
        if self.in_flight:
            where.append(wd.c.id.notin_(list(self.in_flight)))
        counts = dict(self.per_host)
        claimed: list[dict[str, Any]] = []
        with write_tx(self.engine) as conn:
            rows = conn.execute(sa.select(wd).where(*where).order_by(wd.c.id).limit(room * SCAN_FACTOR)).all()
            for row in rows:
                key = host_key(row.url)
                if len(claimed) >= room or counts.get(key, 0) >= per_host:
                    continue
                n = conn.execute(wd.update().where(wd.c.id == row.id, wd.c.next_attempt_at == row.next_attempt_at)
                                 .values(next_attempt_at=lease)).rowcount
                if n == 1:
                    counts[key] = counts.get(key, 0) + 1
                    claimed.append(dict(row._mapping))
        return claimed

    async def _deliver(self, http: httpx.AsyncClient, delivery: dict[str, Any]) -> None:
        try:
            error, permanent = await self._send(http, delivery)
            await run_in_threadpool(self._record, delivery, error, permanent)
        except Exception:  # never let one delivery's surprise end the others; its lease will expire
            log.exception("webhook %s failed unexpectedly", delivery["id"])
        finally:
            self._untrack(delivery)

    async def _send(self, http: httpx.AsyncClient, delivery: dict[str, Any]) -> tuple[str | None, bool]:
        """(error or None, whether retrying is pointless)."""
        body = json.dumps(delivery["payload"], separators=(",", ":"), sort_keys=True).encode()
        timestamp = str(int(self.clock()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "framepack-api-webhooks",
            "X-FramePack-Event": str(delivery["payload"].get("type", "")),
            "X-FramePack-Delivery": str(delivery["id"]),
            **signature_headers(self.settings, message_id(delivery), timestamp, body),
        }
        try:
            request = http.build_request("POST", delivery["url"], content=body, headers=headers)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, TypeError, ValueError) as exc:
            return f"unusable URL: {exc}", True
        try:
            response = await http.send(request)
        except httpx.UnsupportedProtocol as exc:
            return f"unusable URL: {exc}", True
        except httpx.HTTPError as exc:
            refusal = blocked(exc)
            if refusal is not None:
                return f"refused target: {refusal}", True
            return f"{exc.__class__.__name__}: {exc}", False
        if response.status_code >= 300:
            return f"HTTP {response.status_code}", False
        return None, False

    def _record(self, delivery: dict[str, Any], error: str | None, permanent: bool = False) -> None:
        now = self.clock()
        attempts = delivery["attempts"] + 1
        if error is None:
            values: dict[str, Any] = {"status": "delivered", "delivered_at": now, "attempts": attempts}
        elif permanent or attempts >= self.settings.webhook_max_attempts:
            values = {"status": "dead", "attempts": attempts, "last_error": error[:2000]}
            log.warning("webhook %s to %s given up after %d attempt(s): %s",
                        delivery["id"], delivery["url"], attempts, error)
        else:
            values = {"attempts": attempts, "last_error": error[:2000], "next_attempt_at": now + backoff(attempts)}
        with write_tx(self.engine) as conn:
            conn.execute(wd.update().where(wd.c.id == delivery["id"]).values(**values))
