"""A backend that forwards a video job to any OpenAI-compatible `/v1/videos` server.

create once → poll (honouring `openai-poll-after-ms`) → download the MP4 → thumbnail locally.

Creating is the one step that costs money and cannot be repeated blindly: the request is sent
once, with ``Idempotency-Key: <job id>``, and never resent after it may have reached the server (a
timeout, a dropped connection). The remote id, and the fact that a create is under way, are kept in
the job's ``remote.json`` input file, so a later attempt of the same job (after a worker restart)
resumes polling that video, or fails plainly when an earlier create's outcome is unknown.
Polling, by contrast, is safe to retry, and transient errors there are retried with backoff.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from framepack_api.backends.base import Backend, JobOutput, Progress, RunContext
from framepack_api.errors import JobCancelled
from framepack_api.media.video import read_frames, read_mp4_info, write_thumbnail
from framepack_api.params import JobType, RemoteVideoParams
from framepack_api.settings import Settings

log = logging.getLogger(__name__)

POLL_MIN_SECONDS = 0.05
POLL_MAX_SECONDS = 30.0
POLL_DEFAULT_SECONDS = 1.0
POLL_ERRORS_ALLOWED = 10  # consecutive failed polls (network, 5xx, 429) before giving up
CANCEL_CHECK_SECONDS = 0.2


class RemoteError(RuntimeError):
    """The remote server refused, failed, or could not be reached; the message says which."""


class RemoteBackend:
    preset = "remote"
    is_tiny = False

    def __init__(self, settings: Settings, *, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not settings.remote_base_url:
            raise ValueError("the remote backend needs FRAMEPACK_API_REMOTE_BASE_URL")
        self.settings = settings
        self.base_url = settings.remote_base_url.rstrip("/")
        self.transport = transport
        self.sleep = sleep

    def _client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.settings.remote_api_key}"} if self.settings.remote_api_key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, transport=self.transport,
                            timeout=self.settings.remote_timeout_seconds)

    def run(self, job_type: JobType, params: dict[str, Any], inputs: dict[str, Path],
            ctx: RunContext) -> JobOutput:
        if job_type != JobType.remote_video:
            raise ValueError(f"RemoteBackend cannot run {job_type!r} jobs")
        request = RemoteVideoParams.model_validate(params)
        if "remote" not in inputs:
            raise ValueError("a remote_video job needs its 'remote' state input")
        state_path = inputs["remote"]
        state = json.loads(state_path.read_text())
        remote_id: str | None = state.get("remote_id")
        with self._client() as http:
            try:
                if remote_id is None:
                    if state.get("creating"):
                        raise RemoteError("an earlier attempt sent the create request and its outcome is "
                                          "unknown; not resubmitting, to avoid a second remote video")
                    _check(ctx)
                    remote_id = self._create(http, request, inputs.get("image"), state, state_path)
                else:
                    log.info("resuming remote video %s", remote_id)
                video = self._wait(http, remote_id, ctx)
                return self._download(http, remote_id, video, ctx)
            except JobCancelled:
                if remote_id is not None:
                    self._delete(http, remote_id)
                raise

    # -- create ------------------------------------------------------------------------------

    def _create(self, http: httpx.Client, request: RemoteVideoParams, image: Path | None,
                state: dict[str, Any], state_path: Path) -> str:
        fields: dict[str, Any] = {"prompt": request.prompt, "model": request.model,
                                  "seconds": request.seconds, "size": request.size, **request.extra}
        headers = {"Idempotency-Key": f"framepack-api-{state.get('job_id', state_path.parent.name)}"}
        _write_state(state_path, {**state, "creating": True})
        try:
            if image is not None:
                # multipart, like the openai SDK: every field as text, the image as input_reference.
                data = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
                with image.open("rb") as f:
                    response = http.post("/videos", data=data, headers=headers,
                                         files={"input_reference": ("image.png", f, "image/png")})
            else:
                response = http.post("/videos", json=fields, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            _write_state(state_path, state)  # nothing reached the server: a later attempt may create
            raise RemoteError(f"cannot reach {self.base_url}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise RemoteError(f"the create request to {self.base_url} failed after it was sent ({exc!r}); "
                              "not resubmitting, to avoid a second remote video") from exc
        if response.status_code >= 400:
            _write_state(state_path, state)  # refused: no remote video exists
            raise RemoteError(f"the remote server refused the video: {_describe(response)}")
        remote_id = str(response.json()["id"])
        _write_state(state_path, {**state, "remote_id": remote_id})
        log.info("created remote video %s at %s", remote_id, self.base_url)
        return remote_id

    # -- poll --------------------------------------------------------------------------------

    def _wait(self, http: httpx.Client, remote_id: str, ctx: RunContext) -> dict[str, Any]:
        deadline = time.monotonic() + self.settings.remote_max_wait_seconds
        errors = 0
        while True:
            _check(ctx)
            if time.monotonic() > deadline:
                self._delete(http, remote_id)
                raise RemoteError(f"remote video {remote_id} did not finish within "
                                  f"{self.settings.remote_max_wait_seconds:g} s; deleted it")
            try:
                response = http.get(f"/videos/{remote_id}")
            except httpx.HTTPError as exc:
                errors += 1
                if errors > POLL_ERRORS_ALLOWED:
                    raise RemoteError(f"polling remote video {remote_id} failed {errors} times: {exc!r}") from exc
                self._pause(min(POLL_MAX_SECONDS, 2.0 ** errors), ctx)
                continue
            if response.status_code == 429 or response.status_code >= 500:
                errors += 1
                if errors > POLL_ERRORS_ALLOWED:
                    raise RemoteError(f"polling remote video {remote_id}: {_describe(response)}")
                self._pause(min(POLL_MAX_SECONDS, 2.0 ** errors), ctx)
                continue
            if response.status_code >= 400:
                raise RemoteError(f"remote video {remote_id}: {_describe(response)}")
            errors = 0
            video = response.json()
            status, progress = video.get("status"), int(video.get("progress") or 0)
            ctx.progress(Progress(step=max(0, min(progress, 100)), total_steps=100, section=1,
                                  total_sections=1, message=f"remote: {status}"))
            if status == "completed":
                return dict(video)
            if status == "failed":
                error = video.get("error") or {}
                raise RemoteError(f"remote video {remote_id} failed: [{error.get('code') or 'unknown'}] "
                                  f"{error.get('message') or 'no message'}")
            self._pause(_poll_after(response), ctx)

    def _pause(self, seconds: float, ctx: RunContext) -> None:
        """Sleep, looking at the cancel flag often enough that a cancel is seen promptly."""
        remaining = seconds
        while remaining > 0:
            step = min(remaining, CANCEL_CHECK_SECONDS)
            self.sleep(step)
            remaining -= step
            _check(ctx)

    # -- download, delete ------------------------------------------------------------------------

    def _download(self, http: httpx.Client, remote_id: str, video: dict[str, Any], ctx: RunContext) -> JobOutput:
        path = ctx.workdir / "video.mp4"
        fd, tmp_name = tempfile.mkstemp(dir=ctx.workdir, prefix=".video-", suffix=".mp4")
        try:
            with os.fdopen(fd, "wb") as out, http.stream("GET", f"/videos/{remote_id}/content",
                                                         params={"variant": "video"}) as response:
                if response.status_code >= 400:
                    response.read()
                    raise RemoteError(f"downloading remote video {remote_id}: {_describe(response)}")
                for chunk in response.iter_bytes():
                    out.write(chunk)
            os.replace(tmp_name, path)
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
        try:
            info = read_mp4_info(path)
            frames = read_frames(path)
        except Exception as exc:  # PyAV raises its own error types for anything undecodable
            raise RemoteError(f"remote video {remote_id} is not a decodable video: {exc}") from exc
        thumbnail = ctx.workdir / "thumbnail.jpg"
        write_thumbnail(frames[len(frames) // 2], thumbnail)
        return JobOutput(
            files={"video": path, "thumbnail": thumbnail}, seed=-1,  # the remote does not report seeds
            info={"frames": info["frames"], "fps": info["fps"], "width": info["width"], "height": info["height"],
                  "remote_id": remote_id, "remote_url": self.base_url, "model": video.get("model"),
                  "remote_size": video.get("size"), "remote_seconds": video.get("seconds")},
        )

    def _delete(self, http: httpx.Client, remote_id: str) -> None:
        try:
            response = http.delete(f"/videos/{remote_id}")
            if response.status_code >= 400 and response.status_code != 404:
                log.warning("deleting remote video %s: %s", remote_id, _describe(response))
            else:
                log.info("deleted remote video %s", remote_id)
        except httpx.HTTPError as exc:
            log.warning("deleting remote video %s failed: %r", remote_id, exc)


def _check(ctx: RunContext) -> None:
    # The worker's cancelled() raises by itself; a plain callable returns True instead.
    if ctx.cancelled():
        raise JobCancelled()


def _poll_after(response: httpx.Response) -> float:
    try:
        seconds = int(response.headers["openai-poll-after-ms"]) / 1000
    except (KeyError, ValueError):
        return POLL_DEFAULT_SECONDS
    return max(POLL_MIN_SECONDS, min(seconds, POLL_MAX_SECONDS))


def _describe(response: httpx.Response) -> str:
    """An error answer as "HTTP 400 [code] message", from OpenAI's error shape when it is one."""
    try:
        error = response.json().get("error") or {}
        return f"HTTP {response.status_code} [{error.get('code') or error.get('type')}] {error.get('message')}"
    except (ValueError, AttributeError):
        return f"HTTP {response.status_code} {response.text[:300]}"


def _write_state(path: Path, state: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".remote-")
    with os.fdopen(fd, "w") as f:
        json.dump(state, f)
    os.replace(tmp, path)


class RoutingBackend:
    """A worker's backend when remote jobs exist: remote_video jobs go out, video jobs run here.

    FramePack is loaded at start only when local jobs are this server's default; otherwise on the
    first local job, so a forwarding-only worker never loads a model."""

    def __init__(self, settings: Settings, remote: RemoteBackend,
                 local_factory: Callable[[Settings], Backend]) -> None:
        self.settings = settings
        self.remote = remote
        self.local_factory = local_factory
        self.local: Backend | None = None
        self.preset = remote.preset
        self.is_tiny = False
        self.device: str | None = None  # the local model's, once loaded
        if settings.backend == "framepack" or settings.training_backend == "framepack":
            self._load_local()

    def _load_local(self) -> Backend:
        if self.local is None:
            self.local = self.local_factory(self.settings)
            self.preset, self.is_tiny = self.local.preset, self.local.is_tiny
            self.device = getattr(self.local, "device", None)
        return self.local

    def run(self, job_type: JobType, params: dict[str, Any], inputs: dict[str, Path],
            ctx: RunContext) -> JobOutput:
        if job_type == JobType.remote_video:
            return self.remote.run(job_type, params, inputs, ctx)
        return self._load_local().run(job_type, params, inputs, ctx)
