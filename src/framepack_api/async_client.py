"""``AsyncClient``: the native API client for asyncio, method for method the same as ``Client``.

    from framepack_api.client import AsyncClient
    async with AsyncClient("http://127.0.0.1:8000") as api:
        job = await api.submit_video("start.png", prompt="The girl dances", video_length=2)
        await api.wait(job["job_id"], on_progress=print)
        await api.download(job["job_id"], "out.mp4")

The same retry policy, Idempotency-Key on every submit, and once-per-change progress callback as
``Client``; the request bodies and the event parser are the same code (``client_common``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from framepack_api.client_common import (
    TERMINAL,
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

# A progress callback may be a plain function or a coroutine function.
ProgressCallback = Callable[[dict[str, Any]], Awaitable[None] | None]


class AsyncClient:
    def __init__(self, base_url: str = "http://127.0.0.1:8000", *, timeout: float = 60.0,
                 api_key: str | None = None, transport: httpx.AsyncBaseTransport | None = None,
                 retry: RetryPolicy | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout, headers=headers,
                                      transport=transport)
        self.retry = retry or RetryPolicy()
        self._sleep = sleep

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType] | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    # --- transport with retries --------------------------------------------------------------------

    async def _send(self, method: str, path: str, *, stream: bool = False, **kwargs: Any) -> httpx.Response:
        """One repeatable call, tried again while the RetryPolicy allows; with ``stream`` the body is
        left unread (the caller closes the response)."""
        attempt = 0
        while True:
            response: httpx.Response | None
            try:
                response = await self.http.send(self.http.build_request(method, path, **kwargs), stream=stream)
            except httpx.TransportError:
                if not self.retry.should_retry(attempt, None):
                    raise
                response = None
            if response is not None:
                if not self.retry.should_retry(attempt, response):
                    return response
                await response.aclose()
            await self._sleep(self.retry.delay(attempt, response))
            attempt += 1

    @asynccontextmanager
    async def _stream(self, path: str, **kwargs: Any) -> AsyncIterator[httpx.Response]:
        """A streamed GET whose opening is retried; a body that breaks while being read is not."""
        response = await self._send("GET", path, stream=True, **kwargs)
        try:
            if response.status_code >= 400:
                await response.aread()
                raise error_from(response)
            yield response
        finally:
            await response.aclose()

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise error_from(response)
        return response.json()

    async def _get(self, path: str) -> Any:
        return self._json(await self._send("GET", path))

    async def _submit(self, path: str, idempotency_key: str | None, **kwargs: Any) -> dict[str, Any]:
        response = await self._send("POST", path, headers=idempotency_headers(idempotency_key), **kwargs)
        return dict(self._json(response))

    # --- submits ------------------------------------------------------------------------------------

    async def submit_video(self, image: ImageSource, *, end_image: ImageSource | None = None,
                           keyframes: list[ImageSource] | None = None,
                           idempotency_key: str | None = None, **params: Any) -> dict[str, Any]:
        return await self._submit("/generate", idempotency_key, **video_request(image, end_image, params, keyframes))

    async def extend_video(self, video: ImageSource | None = None, *, extend_job_id: str | None = None,
                           idempotency_key: str | None = None, **params: Any) -> dict[str, Any]:
        """Continue a video by ``video_length`` seconds: an MP4 (path, bytes or file), or the id of a
        finished video job of yours as ``extend_job_id``. ``extension_output="new"`` keeps only the new part."""
        params = {**params, "extend_job_id": extend_job_id}
        return await self._submit("/generate", idempotency_key, **extension_request(video, params))

    async def submit_image(self, *, input_image: ImageSource | None = None, idempotency_key: str | None = None,
                           **params: Any) -> dict[str, Any]:
        body = transfer_body({"input_image": input_image}, params)
        return await self._submit("/api/generate-image", idempotency_key, json=without_none(body))

    async def submit_image_batch(self, prompts: list[str], *, idempotency_key: str | None = None,
                                 **params: Any) -> dict[str, Any]:
        body = without_none({**params, "prompts": list(prompts)})
        return await self._submit("/api/batch-images", idempotency_key, json=body)

    async def submit_image_transfer(self, target_image: ImageSource, source_image: ImageSource, *,
                                    target_mask: ImageSource | None = None,
                                    source_mask: ImageSource | None = None,
                                    idempotency_key: str | None = None, **params: Any) -> dict[str, Any]:
        images = {"target_image": target_image, "source_image": source_image, "target_mask": target_mask,
                  "source_mask": source_mask}
        return await self._submit("/api/transfer-image", idempotency_key,
                                  json=without_none(transfer_body(images, params)))

    # --- reads and cancel ---------------------------------------------------------------------------

    async def loras(self) -> dict[str, Any]:
        return dict(await self._get("/loras"))

    async def fetch(self, path: str) -> bytes:
        response = await self._send("GET", path)
        if response.status_code >= 400:
            raise error_from(response)
        return response.content

    async def preview(self, job_id: str) -> bytes:
        return await self.fetch(f"/preview/{job_id}")

    async def thumbnail(self, job_id: str) -> bytes:
        return await self.fetch(f"/thumbnail/{job_id}")

    async def status(self, job_id: str) -> dict[str, Any]:
        return dict(await self._get(f"/status/{job_id}"))

    async def cancel(self, job_id: str) -> dict[str, Any]:
        return dict(self._json(await self._send("POST", f"/cancel/{job_id}")))

    async def queue(self) -> list[dict[str, Any]]:
        return list((await self._get("/queue"))["queue"])

    async def health(self) -> dict[str, Any]:
        response = await self.http.get("/health")
        if response.status_code == 503:
            return dict(response.json())
        return dict(self._json(response))

    async def events(self, job_id: str | None = None, *, last_event_id: int | None = None,
                     read_timeout: float = 60.0) -> AsyncGenerator[ServerEvent, None]:
        path = f"/events/{job_id}" if job_id else "/events"
        headers = {"Last-Event-ID": str(last_event_id)} if last_event_id else {}
        timeout = httpx.Timeout(self.http.timeout.connect, read=read_timeout)
        parser = SSEParser()
        async with self._stream(path, headers=headers, timeout=timeout) as response:
            async for line in response.aiter_lines():
                event = parser.feed(line)
                if event is not None:
                    yield event

    async def wait(self, job_id: str, *, on_progress: ProgressCallback | None = None,
                   poll_interval: float = 1.0, timeout: float | None = None, raise_on_failure: bool = True,
                   use_events: bool = True) -> dict[str, Any]:
        progress = ProgressFilter()
        deadline = time.monotonic() + timeout if timeout else None

        async def report(status: dict[str, Any]) -> None:
            if on_progress and progress.changed(status):
                outcome = on_progress(status)
                if outcome is not None:
                    await outcome

        if use_events:
            try:
                # aclosing: leaving the loop early closes the stream now, not when the generator is collected.
                async with aclosing(self.events(job_id)) as events:
                    async for event in events:
                        await report(event.data)
                        if event.kind in TERMINAL or (deadline and time.monotonic() > deadline):
                            break
            except (httpx.HTTPError, ValueError):
                pass  # a broken stream: polling below carries on, and reports the final status
        while True:
            status = await self.status(job_id)
            await report(status)
            if status["status"] in TERMINAL:
                if raise_on_failure and status["status"] != "completed":
                    raise JobFailed(status)
                return status
            if deadline and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {status['status']} after {timeout}s")
            await asyncio.sleep(poll_interval)

    async def download(self, job_id: str, dest: str | Path) -> Path:
        dest = Path(dest)
        tmp = dest.with_name(dest.name + ".part")
        async with self._stream(f"/result/{job_id}") as response:
            with tmp.open("wb") as f:
                async for chunk in response.aiter_bytes():
                    f.write(chunk)
        tmp.replace(dest)
        return dest
