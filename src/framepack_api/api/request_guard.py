"""The first look at every request, before any route reads it: size and shape of what came in.

- The body may not exceed ``max_body_bytes``: a ``Content-Length`` above it is refused (413) before a
  byte is read, and a body without one (chunked) is counted as it streams, so that neither memory
  nor a multipart spool file grows past the limit. The route's own answer is replaced by the 413.
- A JSON body is parsed once here with ``safe_json``: NaN/Infinity literals, lone surrogates, NUL
  characters and deep nesting are refused with the field they were in, then the body is handed on.
- NUL characters in the path, the query or a header are refused, naming the parameter: PostgreSQL
  cannot compare them with text, and no id or name of this API contains one.

Pure ASGI, not BaseHTTPMiddleware: the body is never buffered beyond what the checks need.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from urllib.parse import parse_qsl

import anyio
from starlette.responses import Response
from starlette.routing import BaseRoute, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from framepack_api import safe_json
from framepack_api.errors import InvalidInput
from framepack_api.params.fields import text_problem

Refuse = Callable[[str, InvalidInput], Response]


INLINE_INSPECT_BYTES = 64 * 1024


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


class RequestGuard:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, refuse: Refuse, router: Router) -> None:
        self.app = app
        self.limit = max_body_bytes
        self.refuse = refuse
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        try:
            self._check_url(scope)
            self._check_headers(headers)
            self._check_declared_length(headers.get("content-length"))
            if _is_json(headers.get("content-type", "")):
                body = await self._read_body(receive)
                if len(body) > INLINE_INSPECT_BYTES:  # a large body is parsed off the event loop
                    await anyio.to_thread.run_sync(safe_json.inspect_body, body)
                else:
                    safe_json.inspect_body(body)
                receive = _replay(body, receive)
        except InvalidInput as exc:
            await self.refuse(scope["path"], exc)(scope, receive, send)
            return
        await self._counted(scope, receive, send)

    def _check_url(self, scope: Scope) -> None:
        if "\x00" in scope["path"]:
            raise InvalidInput(self._path_param(scope), "must not contain a NUL character", location="path")
        query = scope.get("query_string", b"").decode("latin-1")
        for key, value in parse_qsl(query, keep_blank_values=True):
            for text in (key, value):
                problem = text_problem(text)
                if problem:
                    raise InvalidInput(key.replace("\x00", "") or "query", problem, location="query")

    def _path_param(self, scope: Scope) -> str:
        """The name of the path parameter holding the NUL, so that the refusal names it."""
        for regex in _path_patterns(self.router.routes):
            match = regex.match(scope["path"])
            if match:
                for name, value in match.groupdict().items():
                    if "\x00" in value:
                        return name
        return "path"

    @staticmethod
    def _check_headers(headers: dict[str, str]) -> None:
        for name, value in headers.items():
            if "\x00" in value:
                raise InvalidInput(name, "must not contain a NUL character", location="header")

    def _check_declared_length(self, declared: str | None) -> None:
        if declared is None:
            return
        if not declared.strip().isdigit():
            raise InvalidInput("content-length", "must be a number of bytes", location="header")
        if int(declared) > self.limit:
            raise InvalidInput("body", f"the body is {int(declared)} bytes; this server's limit is "
                                       f"{self.limit} (MAX_BODY_BYTES)", too_large=True)

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise InvalidInput("body", f"the body is over this server's limit of {self.limit} bytes "
                                           "(MAX_BODY_BYTES)", too_large=True)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app on a receive that stops at the limit; then answer 413 in its place."""
        received = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # The app sees a client that went away: it stops reading and spooling.
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # the app's answer to a cut-off body; the 413 below replaces it
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            exc = InvalidInput("body", f"the body is over this server's limit of {self.limit} bytes "
                                       "(MAX_BODY_BYTES)", too_large=True)
            await self.refuse(scope["path"], exc)(scope, receive, send)


def _path_patterns(routes: Iterable[BaseRoute]) -> Iterator[re.Pattern[str]]:
    """Every route's path pattern, through the routers that FastAPI includes (which hide theirs)."""
    for route in routes:
        regex = getattr(route, "path_regex", None)
        if isinstance(regex, re.Pattern):
            yield regex
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _path_patterns(inner.routes)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the already-read body once, then whatever the client does next."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
