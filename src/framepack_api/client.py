"""A Python client of the native API, over httpx.

    from framepack_api.client import Client
    with Client("http://127.0.0.1:8000") as api:
        job = api.submit_video("start.png", prompt="The girl dances", video_length=2)
        api.wait(job["job_id"], on_progress=lambda s: print(s["progress"]))
        api.download(job["job_id"], "out.mp4")
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

TERMINAL = ("completed", "failed", "cancelled")


class APIError(Exception):
    """The server answered with an error status; `detail` is its JSON `detail`."""

    def __init__(self, status_code: int, detail: Any) -> None:
        super().__init__(f"HTTP {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


@dataclass(frozen=True)
class ServerEvent:
    """One server-sent event: `kind` is status, progress, preview, completed, failed or cancelled."""

    id: int
    kind: str
    data: dict[str, Any]


class JobFailed(Exception):
    def __init__(self, status: dict[str, Any]) -> None:
        super().__init__(f"job {status['job_id']} {status['status']}: {status.get('error') or ''}")
        self.status = status


class Client:
    def __init__(self, base_url: str = "http://127.0.0.1:8000", *, timeout: float = 60.0,
                 api_key: str | None = None, transport: httpx.BaseTransport | None = None) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, headers=headers,
                                 transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType] | None) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _json(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise APIError(response.status_code, detail)
        return response.json()

    def submit_video(self, image: str | Path | bytes, *, end_image: str | Path | bytes | None = None,
                     idempotency_key: str | None = None, **params: Any) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        if any(isinstance(v, (list, tuple, dict)) for v in params.values()):
            # Form fields carry only strings, so lists (lora_paths, lora_scales) go as JSON + base64 images.
            body = {k: v for k, v in params.items() if v is not None}
            body["image"] = _b64(image)
            if end_image is not None:
                body["end_image"] = _b64(end_image)
            return dict(self._json(self.http.post("/generate", json=body, headers=headers)))
        files = {"image": ("image", _read(image), "application/octet-stream")}
        if end_image is not None:
            files["end_image"] = ("end_image", _read(end_image), "application/octet-stream")
        data = {k: _form_value(v) for k, v in params.items() if v is not None}
        return dict(self._json(self.http.post("/generate", data=data, files=files, headers=headers)))

    def _post_json(self, path: str, body: dict[str, Any], idempotency_key: str | None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return dict(self._json(self.http.post(path, json={k: v for k, v in body.items() if v is not None},
                                              headers=headers)))

    def submit_image(self, *, input_image: str | Path | bytes | None = None, idempotency_key: str | None = None,
                     **params: Any) -> dict[str, Any]:
        """One image (seed 002 `POST /api/generate-image`); without input_image, text to image."""
        image = _b64(input_image) if input_image is not None else None
        return self._post_json("/api/generate-image", {**params, "input_image": image}, idempotency_key)

    def submit_image_batch(self, prompts: list[str], *, idempotency_key: str | None = None,
                           **params: Any) -> dict[str, Any]:
        """One image per prompt (`POST /api/batch-images`)."""
        return self._post_json("/api/batch-images", {**params, "prompts": list(prompts)}, idempotency_key)

    def submit_image_transfer(self, target_image: str | Path | bytes, source_image: str | Path | bytes, *,
                              target_mask: str | Path | bytes | None = None,
                              source_mask: str | Path | bytes | None = None,
                              idempotency_key: str | None = None, **params: Any) -> dict[str, Any]:
        """Kisekaeichi (`POST /api/transfer-image`): the source's clothing/style onto the target."""
        images = {"target_image": target_image, "source_image": source_image, "target_mask": target_mask,
                  "source_mask": source_mask}
        encoded = {k: _b64(v) for k, v in images.items() if v is not None}
        return self._post_json("/api/transfer-image", {**params, **encoded}, idempotency_key)

    def loras(self) -> dict[str, Any]:
        """`GET /loras`: {"lora_dir_configured": bool, "loras": [{"name", "size_bytes", "format"}]}."""
        return dict(self._json(self.http.get("/loras")))

    def fetch(self, path: str) -> bytes:
        """The body of a binary GET relative to the server (a preview, thumbnail or one batch image)."""
        response = self.http.get(path)
        if response.status_code >= 400:
            self._json(response)
        return response.content

    def preview(self, job_id: str) -> bytes:
        """The newest latent preview of a running job (JPEG)."""
        return self.fetch(f"/preview/{job_id}")

    def thumbnail(self, job_id: str) -> bytes:
        """The input image while waiting or running, a frame of the result once completed (JPEG)."""
        return self.fetch(f"/thumbnail/{job_id}")

    def status(self, job_id: str) -> dict[str, Any]:
        return dict(self._json(self.http.get(f"/status/{job_id}")))

    def cancel(self, job_id: str) -> dict[str, Any]:
        return dict(self._json(self.http.post(f"/cancel/{job_id}")))

    def queue(self) -> list[dict[str, Any]]:
        return list(self._json(self.http.get("/queue"))["queue"])

    def health(self) -> dict[str, Any]:
        """The health body, also when degraded (503: no live worker, low disk, database down)."""
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
        with self.http.stream("GET", path, headers=headers, timeout=timeout) as response:
            if response.status_code >= 400:
                response.read()
                self._json(response)
            fields: dict[str, str] = {}
            for line in response.iter_lines():
                if line == "":
                    if "data" in fields and "id" in fields:
                        yield ServerEvent(int(fields["id"]), fields.get("event", "message"),
                                          json.loads(fields["data"]))
                    fields = {}
                elif not line.startswith(":") and ":" in line:
                    name, _, value = line.partition(":")
                    fields[name] = value[1:] if value.startswith(" ") else value

    def wait(self, job_id: str, *, on_progress: Callable[[dict[str, Any]], None] | None = None,
             poll_interval: float = 1.0, timeout: float | None = None, raise_on_failure: bool = True,
             use_events: bool = True) -> dict[str, Any]:
        """Wait until the job ends, pushed by server-sent events (polling when the stream breaks);
        returns its final status."""
        deadline = time.monotonic() + timeout if timeout else None
        if use_events:
            try:
                for event in self.events(job_id):
                    if on_progress:
                        on_progress(event.data)
                    if event.kind in TERMINAL or (deadline and time.monotonic() > deadline):
                        break
            except (httpx.HTTPError, ValueError):
                pass  # a broken stream: polling below carries on, and reports the final status
        while True:
            status = self.status(job_id)
            if on_progress:
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
        with self.http.stream("GET", f"/result/{job_id}") as response:
            if response.status_code >= 400:
                response.read()
                self._json(response)
            tmp = dest.with_name(dest.name + ".part")
            with tmp.open("wb") as f:
                for chunk in response.iter_bytes():
                    f.write(chunk)
            tmp.replace(dest)
        return dest


def _read(source: str | Path | bytes) -> bytes:
    return source if isinstance(source, bytes) else Path(source).read_bytes()


def _b64(source: str | Path | bytes) -> str:
    return base64.b64encode(_read(source)).decode("ascii")


def _form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
