"""What the sync ``Client`` and the ``AsyncClient`` share: errors, the retry policy, request bodies,
the server-sent-event parser and the progress filter. No I/O here, so both clients use it unchanged.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

TERMINAL = ("completed", "failed", "cancelled")
# Answers of a proxy or a server that is starting, stopping or briefly without its database:
# the request did not run, or running it again is harmless for the calls that are retried.
RETRY_STATUSES = frozenset({502, 503, 504})

ImageSource = str | Path | bytes


class APIError(Exception):
    """The server answered with an error status; `detail` is its JSON `detail`."""

    def __init__(self, status_code: int, detail: Any) -> None:
        super().__init__(f"HTTP {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


class JobFailed(Exception):
    def __init__(self, status: dict[str, Any]) -> None:
        super().__init__(f"job {status['job_id']} {status['status']}: {status.get('error') or ''}")
        self.status = status


@dataclass(frozen=True)
class ServerEvent:
    """One server-sent event: `kind` is status, progress, preview, completed, failed or cancelled."""

    id: int
    kind: str
    data: dict[str, Any]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a call that is safe to repeat is tried again.

    Retried: connection errors (refused, reset, timed out) and 502/503/504 answers, for GET, DELETE
    and cancel (idempotent on the server), and for submits, which always carry an Idempotency-Key so
    that a repeat returns the job the first try created instead of queueing a second one.
    """

    retries: int = 3  # tries after the first
    backoff: float = 0.5  # seconds before the first retry; doubled each time
    max_backoff: float = 8.0

    def delay(self, attempt: int, response: httpx.Response | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based); a Retry-After is honoured up to
        ``max_backoff``."""
        wait = min(self.backoff * (2 ** attempt), self.max_backoff)
        retry_after = response.headers.get("Retry-After", "") if response is not None else ""
        if retry_after.isdigit():
            wait = max(wait, min(float(retry_after), self.max_backoff))
        return wait

    def should_retry(self, attempt: int, response: httpx.Response | None) -> bool:
        """After a try that raised a connection error (``response`` None) or answered ``response``."""
        if attempt >= self.retries:
            return False
        return response is None or response.status_code in RETRY_STATUSES


def idempotency_headers(key: str | None) -> dict[str, str]:
    """Every submit carries a key (the caller's, else a fresh one), so its retries are safe."""
    return {"Idempotency-Key": key or f"client-{uuid.uuid4().hex}"}


def error_from(response: httpx.Response) -> APIError:
    try:
        body = response.json()
        detail = body.get("detail", response.text) if isinstance(body, dict) else body
    except ValueError:
        detail = response.text
    return APIError(response.status_code, detail)


def video_request(image: ImageSource, end_image: ImageSource | None, params: dict[str, Any],
                  keyframes: list[ImageSource] | None = None) -> dict[str, Any]:
    """httpx keyword arguments of a ``POST /generate``: multipart, or JSON when a value is a list.
    ``keyframes``: the images of ``params["keyframe_times"]``, in the same order."""
    keyframes = list(keyframes or [])
    if any(isinstance(v, (list, tuple, dict)) for v in params.values()):
        # Form fields carry only strings, so lists (lora_paths, lora_scales) go as JSON + base64 images.
        body = {k: v for k, v in params.items() if v is not None}
        body["image"] = b64(image)
        if end_image is not None:
            body["end_image"] = b64(end_image)
        if keyframes:
            body["keyframe_images"] = [b64(k) for k in keyframes]
        return {"json": body}
    files = [("image", ("image", read(image), "application/octet-stream"))]
    if end_image is not None:
        files.append(("end_image", ("end_image", read(end_image), "application/octet-stream")))
    files += [("keyframe_images", (f"keyframe_{i}", read(k), "application/octet-stream"))
              for i, k in enumerate(keyframes)]
    data = {k: form_value(v) for k, v in params.items() if v is not None}
    return {"data": data, "files": files}


def extension_request(video: ImageSource | None, params: dict[str, Any]) -> dict[str, Any]:
    """httpx keyword arguments of an extension ``POST /generate``: the MP4 upload (or none, with
    ``extend_job_id`` in params), multipart; JSON with a base64 video when a value is a list."""
    if any(isinstance(v, (list, tuple, dict)) for v in params.values()):
        body = {k: v for k, v in params.items() if v is not None}
        if video is not None:
            body["video"] = b64(video)
        return {"json": body}
    data = {k: form_value(v) for k, v in params.items() if v is not None}
    if video is None:
        return {"data": data}
    return {"data": data, "files": {"video": ("video.mp4", read(video), "video/mp4")}}


def transfer_body(images: dict[str, ImageSource | None], params: dict[str, Any]) -> dict[str, Any]:
    return {**params, **{k: b64(v) for k, v in images.items() if v is not None}}


def without_none(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


@dataclass
class SSEParser:
    """Feeds lines of a ``text/event-stream``; returns an event at each blank line that ends one."""

    fields: dict[str, str] = field(default_factory=dict)

    def feed(self, line: str) -> ServerEvent | None:
        if line == "":
            fields, self.fields = self.fields, {}
            if "data" in fields and "id" in fields:
                return ServerEvent(int(fields["id"]), fields.get("event", "message"), json.loads(fields["data"]))
            return None
        if not line.startswith(":") and ":" in line:
            name, _, value = line.partition(":")
            self.fields[name] = value[1:] if value.startswith(" ") else value
        return None


class ProgressFilter:
    """Tells whether what a progress bar shows changed — status, overall progress, section, step,
    queue position or message — so a callback runs once per change, not per poll or new preview."""

    KEYS = ("status", "progress", "section", "step", "queue_position", "message")

    def __init__(self) -> None:
        self.last: tuple[Any, ...] | None = None

    def changed(self, status: dict[str, Any]) -> bool:
        key = tuple(status.get(k) for k in self.KEYS)
        if key == self.last:
            return False
        self.last = key
        return True


def read(source: ImageSource) -> bytes:
    return source if isinstance(source, bytes) else Path(source).read_bytes()


def b64(source: ImageSource) -> str:
    return base64.b64encode(read(source)).decode("ascii")


def form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
