"""Authentication (off until keys or users are set) and CORS, as ASGI middleware.

API keys arrive as ``Authorization: Bearer <key>`` (what the `openai` SDK sends) or ``X-API-Key``;
HTTP Basic users as ``Authorization: Basic`` (what seed 004's gateway used). Every comparison is
constant-time over SHA-256 digests, so neither the length nor the content of a key leaks through
timing. ``/health`` stays open for load balancers. Middleware, not a dependency, so that every
route (every dialect, the docs) is covered without each router opting in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable
from contextvars import ContextVar

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from framepack_api.api.openai_errors import error_body
from framepack_api.settings import Settings

OPEN_PATHS = frozenset({"/health"})
REALM = "framepack-api"

# Who made the request being served: a key id ("key:" + 16 hex digits of the key's SHA-256, never the
# key) or "user:<name>" for HTTP Basic; None when auth is off. A context variable, so that it reaches
# the submit code (and its worker threads) without every route passing it along.
current_credential: ContextVar[str | None] = ContextVar("framepack_credential", default=None)


def credential_id(headers: dict[str, str]) -> str | None:
    """The id of the credential in already-validated headers."""
    api_key = headers.get("x-api-key")
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if api_key is None and scheme.lower() == "bearer":
        api_key = value.strip()
    if api_key is not None:
        return "key:" + hashlib.sha256(api_key.encode()).hexdigest()[:16]
    if scheme.lower() == "basic":
        user = base64.b64decode(value.strip()).decode("utf-8").partition(":")[0]
        return f"user:{user}"
    return None


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def _matches(candidate: str, digests: Iterable[bytes]) -> bool:
    """Compare against every configured secret without stopping early."""
    wanted = _digest(candidate)
    found = False
    for digest in digests:
        found |= hmac.compare_digest(wanted, digest)
    return found


class AuthMiddleware:
    def __init__(self, app: ASGIApp, *, api_keys: list[str], basic_users: list[str]) -> None:
        self.app = app
        for user in basic_users:
            if ":" not in user:
                raise ValueError('basic_auth_users entries must be "user:password"')
        self.key_digests = [_digest(k) for k in api_keys if k]
        self.basic_digests = [_digest(u) for u in basic_users]
        challenges = []
        if self.key_digests:
            challenges.append(f'Bearer realm="{REALM}"')
        if self.basic_digests:
            challenges.append(f'Basic realm="{REALM}", charset="UTF-8"')
        self.challenges = challenges

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        problem = self.check(headers)
        if problem is None:
            token = current_credential.set(credential_id(headers))
            try:
                await self.app(scope, receive, send)
            finally:
                current_credential.reset(token)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await self._refuse(scope, send, problem)

    def check(self, headers: dict[str, str]) -> str | None:
        """None when the request carries valid credentials, else why not."""
        api_key = headers.get("x-api-key")
        if api_key is not None:
            return None if _matches(api_key, self.key_digests) else "Incorrect API key provided."
        authorization = headers.get("authorization", "")
        scheme, _, value = authorization.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            return None if _matches(value.strip(), self.key_digests) else "Incorrect API key provided."
        if scheme == "basic":
            try:
                pair = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return "Malformed Basic credentials."
            return None if _matches(pair, self.basic_digests) else "Incorrect user name or password."
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


def install_auth(app: FastAPI, settings: Settings) -> None:
    """Auth when configured; CORS outside it, so that preflights and refusals carry CORS headers."""
    if settings.api_keys or settings.basic_auth_users:
        app.add_middleware(AuthMiddleware, api_keys=list(settings.api_keys),
                           basic_users=list(settings.basic_auth_users))
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["*"],
            allow_headers=["*"], expose_headers=["openai-poll-after-ms", "Location"],
            # Browsers refuse credentials with a wildcard origin; with listed origins they are allowed.
            allow_credentials="*" not in settings.cors_origins,
        )
