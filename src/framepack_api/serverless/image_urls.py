"""Start and end images given by URL (``input_image_url``, ``end_image_url``) instead of base64.

A URL in an event is the caller's choice of where this function connects, so it follows the same
rules as webhooks and ``output_url`` (``net_guard``): loopback, private, link-local and other inside
addresses are refused, as literals before anything is sent and as resolved names at connect time;
``FRAMEPACK_API_OUTBOUND_ALLOW`` opens exceptions. The body is read in chunks and cut off past
``MAX_UPLOAD_BYTES``, so a huge or endless answer costs no more than the limit. Redirects are not
followed (a redirect could point inside). The target's answer body never reaches the response.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from framepack_api.errors import InvalidInput
from framepack_api.net_guard import NetGuard, blocked, guarded_client
from framepack_api.params.fields import text_problem


def check_image_url(field: str, value: object, guard: NetGuard) -> str:
    """Refuse an unusable URL without sending anything; address literals inside are refused here."""
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be a URL string, got {type(value).__name__}")
    problem = text_problem(value)
    if problem:
        raise InvalidInput(field, problem)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput(field, "must be an http(s) URL of a PNG, JPEG or WebP image")
    try:
        guard.check_url(value, resolve=False)
    except ValueError as exc:
        raise InvalidInput(field, str(exc)) from None
    return value


def fetch_image(field: str, url: str, guard: NetGuard, *, max_bytes: int, timeout: float) -> bytes:
    """GET the image; every failure is an InvalidInput naming ``field`` (the caller gave the URL)."""
    try:
        with guarded_client(guard, timeout=timeout) as http, \
                http.stream("GET", url, headers={"Accept": "image/*"}) as response:
            if not response.is_success:
                hint = " (redirects are not followed)" if response.is_redirect else ""
                raise InvalidInput(field, f"GET answered HTTP {response.status_code}{hint}")
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise InvalidInput(field, f"image is {declared} bytes; the limit is {max_bytes}", too_large=True)
            data = bytearray()
            for chunk in response.iter_bytes():
                data.extend(chunk)
                if len(data) > max_bytes:  # no or a false Content-Length: stop reading at the limit
                    raise InvalidInput(field, f"image is larger than the {max_bytes} byte limit", too_large=True)
            return bytes(data)
    except httpx.HTTPError as exc:
        refusal = blocked(exc)
        if refusal is not None:
            raise InvalidInput(field, f"refused: {refusal}") from None
        raise InvalidInput(field, f"GET failed: {exc.__class__.__name__}") from None
