"""Authentication (off until keys or users are set) and CORS, as ASGI middleware.

API keys arrive as ``Authorization: Bearer <key>`` (what the `openai` SDK sends) or ``X-API-Key``;
HTTP Basic users as ``Authorization: Basic`` (what seed 004's gateway used). Every comparison is
constant-time over SHA-256 digests, so neither the length nor the content of a key leaks through
timing. ``/health`` stays open for load balancers. Middleware, not a dependency, so that every
route (every dialect, the docs) is covered without each router opting in.

Tenants: the middleware also says *who* called, as a ``Caller`` in the request's state. Its ``owner``
is a key id (a short SHA-256 of the key, or ``user:<name>`` for Basic users): jobs are stored with
it and every read is scoped by it, so one credential never sees another's jobs. Admin keys see all.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from framepack_api.api.openai_errors import error_body
from framepack_api.settings import Settings

OPEN_PATHS = frozenset({"/health", "/ready"})  # probes: liveness and readiness
CREDENTIALS_OK = "framepack_credentials_ok"  # request.state key set on open paths


def has_credentials(request: Request) -> bool:
    """True when the request carried valid credentials, or when auth is off (no middleware)."""
    return bool(getattr(request.state, CREDENTIALS_OK, True))
REALM = "framepack-api"

@dataclass(frozen=True)
class Caller:
    """Who sent a request. ``owner`` is stored on the jobs it creates ("" while auth is off)."""

    owner: str
    admin: bool

    @property
    def scope(self) -> str | None:
        """The owner whose jobs this caller may see; None: every job (admin, or auth off)."""
        return None if self.admin else self.owner


ANONYMOUS = Caller(owner="", admin=True)  # auth off: one tenant, as before tenants existed


def key_id(api_key: str) -> str:
    """What a key's jobs are stored under: enough to tell keys apart, useless to recover the key."""
    return "key:" + hashlib.sha256(api_key.encode()).hexdigest()[:16]


def user_id(user: str) -> str:
    return f"user:{user}" if len(user) <= 59 else "user:" + hashlib.sha256(user.encode()).hexdigest()[:16]


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def _match(candidate: str, digests: Iterable[tuple[bytes, Caller]]) -> Caller | None:
    """Compare against every configured secret without stopping early; the matching one's caller."""
    wanted = _digest(candidate)
    found: Caller | None = None
    for digest, caller in digests:
        if hmac.compare_digest(wanted, digest):
            found = caller
    return found


class AuthMiddleware:
    def __init__(self, app: ASGIApp, *, api_keys: list[str], basic_users: list[str],
                 admin_keys: list[str] | None = None) -> None:
        self.app = app
        for user in basic_users:
            if ":" not in user:
                raise ValueError('basic_auth_users entries must be "user:password"')
        self.key_digests = [(_digest(k), Caller(key_id(k), admin=False)) for k in api_keys if k]
        self.key_digests += [(_digest(k), Caller(key_id(k), admin=True)) for k in admin_keys or [] if k]
        self.basic_digests = [(_digest(u), Caller(user_id(u.split(":", 1)[0]), admin=False)) for u in basic_users]
        challenges = []
        if self.key_digests:
            challenges.append(f'Bearer realm="{REALM}"')
        if self.basic_digests:
            challenges.append(f'Basic realm="{REALM}", charset="UTF-8"')
        self.challenges = challenges

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        problem = self.check(headers)
        if isinstance(problem, Caller):
            scope.setdefault("state", {})["caller"] = problem
        if scope["path"] in OPEN_PATHS:
            # Served either way; the route shows details (hosts, pids, job ids) only to credentials.
            scope.setdefault("state", {})[CREDENTIALS_OK] = isinstance(problem, Caller)
            await self.app(scope, receive, send)
            return
        if isinstance(problem, Caller):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await self._refuse(scope, send, problem)

    def check(self, headers: dict[str, str]) -> Caller | str:
        """The caller when the request carries valid credentials, else why not."""
        api_key = headers.get("x-api-key")
        if api_key is not None:
            return _match(api_key, self.key_digests) or "Incorrect API key provided."
        authorization = headers.get("authorization", "")
        scheme, _, value = authorization.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            return _match(value.strip(), self.key_digests) or "Incorrect API key provided."
        if scheme == "basic":
            try:
                pair = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return "Malformed Basic credentials."
            return _match(pair, self.basic_digests) or "Incorrect user name or password."
        return "Missing credentials: send an API key (Authorization: Bearer or X-API-Key) or HTTP Basic."

    async def _refuse(self, scope: Scope, send: Send, problem: str) -> None:
        path: str = scope["path"]
        if path.startswith("/v1/") or path == "/v1":
            body = error_body(problem, code="invalid_api_key")
        else:
            body = {"detail": problem}
        payload = json.dumps(body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        headers += [(b"www-authenticate", c.encode()) for c in self.challenges]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def get_caller_now(request: Request) -> Caller:
    caller: Caller = getattr(request.state, "caller", ANONYMOUS)
    return caller


async def get_caller(request: Request) -> Caller:  # async: no thread hop (see api/deps.py)
    return get_caller_now(request)


CallerDep = Annotated[Caller, Depends(get_caller)]


def install_auth(app: FastAPI, settings: Settings) -> None:
    """Auth when configured; CORS outside it, so that preflights and refusals carry CORS headers."""
    if settings.api_keys or settings.basic_auth_users or settings.admin_api_keys:
        app.add_middleware(AuthMiddleware, api_keys=list(settings.api_keys),
                           basic_users=list(settings.basic_auth_users),
                           admin_keys=list(settings.admin_api_keys))
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["*"],
            allow_headers=["*"], expose_headers=["openai-poll-after-ms", "Location"],
            # Browsers refuse credentials with a wildcard origin; with listed origins they are allowed.
            allow_credentials="*" not in settings.cors_origins,
        )
