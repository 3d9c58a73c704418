"""A Python client of the native API, over httpx (``AsyncClient`` is the same for asyncio).

    from framepack_api.client import Client
    with Client("http://127.0.0.1:8000", api_key="...") as api:
        job = api.submit_video("start.png", prompt="The girl dances", video_length=2)
        api.wait(job["job_id"], on_progress=lambda s: print(s["progress"]))
        api.download(job["job_id"], "out.mp4")

Calls that are safe to repeat are retried on connection errors and 502/503/504 with exponential
backoff (``RetryPolicy``): reads, downloads, cancel, and submits — each submit carries an
Idempotency-Key (yours, or a generated one), so a retried submit never queues a second job.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from framepack_api.async_client import AsyncClient
from framepack_api.client_common import (
    TERMINAL,
    APIError,
    ImageSource,
    JobFailed,
    ProgressFilter,
    RetryPolicy,
    ServerEvent,
    SSEParser,
    error_from,
    extension_request,
    idempotency_headers,
    transfer_body,
    video_request,
    without_none,
)

__all__ = ["TERMINAL", "APIError", "AsyncClient", "Client", "JobFailed", "RetryPolicy", "ServerEvent"]


class Client:
    def __init__(self, base_url: str = "http://127.0.0.1:8000", *, timeout: float = 60.0,
                 api_key: str | None = None, transport: httpx.BaseTransport | None = None,
                 retry: RetryPolicy | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, headers=headers,
                                 transport=transport)
        self.retry = retry or RetryPolicy()
        self._sleep = sleep

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType] | None) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # --- transport with retries --------------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call, tried again while the RetryPolicy allows (callers send only repeatable calls)."""
        attempt = 0
        while True:
            response: httpx.Response | None
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError:
                if not self.retry.should_retry(attempt, None):
                    raise
                response = None
            if response is not None and not self.retry.should_retry(attempt, response):
                return response
            self._sleep(self.retry.delay(attempt, response))
            attempt += 1

    @contextmanager
    def _stream(self, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A streamed GET. Opening it (connection and status) is retried; a body that breaks while
        the caller reads it is not (the caller may have used part of it)."""
        response = self._open(path, **kwargs)
        try:
            yield response
        finally:
            response.close()

    def _open(self, path: str, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            response: httpx.Response | None
            try:
                response = self.http.send(self.http.build_request("GET", path, **kwargs), stream=True)
            except httpx.TransportError:
                if not self.retry.should_retry(attempt, None):
                    raise
                response = None
            if response is not None:
                if not self.retry.should_retry(attempt, response):
                    if response.status_code >= 400:
                        response.read()
                        response.close()
                        raise error_from(response)
                    return response
                response.close()
            self._sleep(self.retry.delay(attempt, response))
            attempt += 1

    def _json(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise error_from(response)
        return response.json()

    def _get(self, path: str) -> Any:
        return self._json(self._send("GET", path))

    def _submit(self, path: str, idempotency_key: str | None, **kwargs: Any) -> dict[str, Any]:
        return dict(self._json(self._send("POST", path, headers=idempotency_headers(idempotency_key), **kwargs)))

    # --- submits ------------------------------------------------------------------------------------

    def submit_video(self, image: ImageSource, *, end_image: ImageSource | None = None,
                     keyframes: list[ImageSource] | None = None,
                     idempotency_key: str | None = None, **params: Any) -> dict[str, Any]:
        return self._submit("/generate", idempotency_key, **video_request(image, end_image, params, keyframes))

    def extend_video(self, video: ImageSource | None = None, *, extend_job_id: str | None = None,
                     idempotency_key: str | None = None, **params: Any) -> dict[str, Any]:
        """Continue a video by ``video_length`` seconds: an MP4 (path, bytes or file), or the id of a
        finished video job of yours as ``extend_job_id``. ``extension_output="new"`` keeps only the new part."""
        params = {**params, "extend_job_id": extend_job_id}
        return self._submit("/generate", idempotency_key, **extension_request(video, params))

    def submit_image(self, *, input_image: ImageSource | None = None, idempotency_key: str | None = None,
                     **params: Any) -> dict[str, Any]:
        """One image (seed 002 `POST /api/generate-image`); without input_image, text to image."""
        body = transfer_body({"input_image": input_image}, params)
        return self._submit("/api/generate-image", idempotency_key, json=without_none(body))

    def submit_image_batch(self, prompts: list[str], *, idempotency_key: str | None = None,
                           **params: Any) -> dict[str, Any]:
        """One image per prompt (`POST /api/batch-images`)."""
        body = without_none({**params, "prompts": list(prompts)})
        return self._submit("/api/batch-images", idempotency_key, json=body)

    def submit_image_transfer(self, target_image: ImageSource, source_image: ImageSource, *,
                              target_mask: ImageSource | None = None, source_mask: ImageSource | None = None,
                              idempotency_key: str | None = None, **params: Any) -> dict[str, Any]:
        """Kisekaeichi (`POST /api/transfer-image`): the source's clothing/style onto the target."""
        images = {"target_image": target_image, "source_image": source_image, "target_mask": target_mask,
                  "source_mask": source_mask}
        return self._submit("/api/transfer-image", idempotency_key,
                            json=without_none(transfer_body(images, params)))

    # --- reads and cancel ---------------------------------------------------------------------------

    def loras(self) -> dict[str, Any]:
        """`GET /loras`: {"lora_dir_configured": bool, "loras": [{"name", "size_bytes", "format"}]}."""
        return dict(self._get("/loras"))

    def fetch(self, path: str) -> bytes:
        """The body of a binary GET relative to the server (a preview, thumbnail or one batch image)."""
        response = self._send("GET", path)
        if response.status_code >= 400:
            raise error_from(response)
        return response.content

    def preview(self, job_id: str) -> bytes:
        """The newest latent preview of a running job (JPEG)."""
        return self.fetch(f"/preview/{job_id}")

    def thumbnail(self, job_id: str) -> bytes:
        """The input image while waiting or running, a frame of the result once completed (JPEG)."""
        return self.fetch(f"/thumbnail/{job_id}")

    def status(self, job_id: str) -> dict[str, Any]:
        return dict(self._get(f"/status/{job_id}"))

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Idempotent on the server (cancelling twice answers the same), so it is retried."""
        return dict(self._json(self._send("POST", f"/cancel/{job_id}")))

    def queue(self) -> list[dict[str, Any]]:
        return list(self._get("/queue")["queue"])

    def health(self) -> dict[str, Any]:
        """The health body, also when degraded (503: no live worker, low disk, database down); a 503
        here is an answer, so it is not retried."""
        response = self.http.get("/health")
        if response.status_code == 503:
            return dict(response.json())
        return dict(self._json(response))

    def events(self, job_id: str | None = None, *, last_event_id: int | None = None,
               read_timeout: float = 60.0) -> Iterator[ServerEvent]:
        """Server-sent events of one job (ends after its terminal event) or of every job."""
        path = f"/events/{job_id}" if job_id else "/events"
        headers = {"Last-Event-ID": str(last_event_id)} if last_event_id else {}
        timeout = httpx.Timeout(self.http.timeout.connect, read=read_timeout)
        parser = SSEParser()
        with self._stream(path, headers=headers, timeout=timeout) as response:
            for line in response.iter_lines():
                event = parser.feed(line)
                if event is not None:
                    yield event

    def wait(self, job_id: str, *, on_progress: Callable[[dict[str, Any]], None] | None = None,
             poll_interval: float = 1.0, timeout: float | None = None, raise_on_failure: bool = True,
             use_events: bool = True) -> dict[str, Any]:
        """Wait until the job ends, pushed by server-sent events (polling when the stream breaks);
        returns its final status. ``on_progress`` gets a status dict once per change of status,
        progress, section, step, queue position or message."""
        progress = ProgressFilter()
        deadline = time.monotonic() + timeout if timeout else None
        if use_events:
            try:
                for event in self.events(job_id):
                    if on_progress and progress.changed(event.data):
                        on_progress(event.data)
                    if event.kind in TERMINAL or (deadline and time.monotonic() > deadline):
                        break
            except (httpx.HTTPError, ValueError):
                pass  # a broken stream: polling below carries on, and reports the final status
        while True:
            status = self.status(job_id)
            if on_progress and progress.changed(status):
                on_progress(status)
            if status["status"] in TERMINAL:
                if raise_on_failure and status["status"] != "completed":
                    raise JobFailed(status)
                return status
            if deadline and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {status['status']} after {timeout}s")
            time.sleep(poll_interval)

    def download(self, job_id: str, dest: str | Path) -> Path:
        dest = Path(dest)
        tmp = dest.with_name(dest.name + ".part")
        with self._stream(f"/result/{job_id}") as response, tmp.open("wb") as f:
            for chunk in response.iter_bytes():
                f.write(chunk)
        tmp.replace(dest)
        return dest
