"""Issue 13: FramePack-FastAPI's download, worker and stream paths on a real server with a worker."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from _servers import SLOW, Server, png_bytes, shared, wait_for

FAST = {"prompt": "compat", "video_length": "0.3", "latent_window_size": "2", "steps": "2", "seed": "7"}


@pytest.fixture(scope="module")
def server() -> Server:
    return shared("local")


def submit(server: Server, fields: dict[str, Any]) -> str:
    r = httpx.post(f"{server.url}/generate", data={k: str(v) for k, v in fields.items()},
                   files={"image": ("i.png", png_bytes(), "image/png")}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["message"] == "Job queued"
    return str(r.json()["job_id"])


def status(server: Server, job_id: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{server.url}/status/{job_id}", timeout=30).json()
    return body


def finished(server: Server, job_id: str) -> dict[str, Any]:
    return dict(wait_for(lambda: (s := status(server, job_id))["status"] in ("completed", "failed", "cancelled")
                         and s, timeout=180))


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "event" in lines and "data" in lines:
            events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_download_video_is_the_result_mp4_and_stream_status_replays_to_the_end(server: Server) -> None:
    job_id = submit(server, FAST)
    done = finished(server, job_id)
    assert done["status"] == "completed", done
    assert done["progress_step"] == done["step"] and done["progress_total"] == done["total_steps"]
    assert done["progress_info"] == done["message"]
    download = httpx.get(f"{server.url}/download/video/{job_id}", timeout=30)
    result = httpx.get(f"{server.url}/result/{job_id}", timeout=30)
    assert download.status_code == 200 and download.headers["content-type"] == "video/mp4"
    assert download.content[4:8] == b"ftyp" and download.content == result.content
    # A finished job's stream replays its whole log, then closes after the terminal event.
    with httpx.stream("GET", f"{server.url}/stream/status/{job_id}", timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        text = r.read().decode()
    events = sse_events(text)
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "completed" and "progress" in kinds, kinds
    progress = [data for kind, data in events if kind == "progress"]
    assert all(d["progress_step"] == d["step"] and d["progress_total"] == d["total_steps"]
               and d["progress_info"] == d["message"] for d in progress)
    assert any(d["progress_step"] for d in progress) and events[-1][1]["status"] == "completed"


def test_worker_status_names_the_running_job(server: Server) -> None:
    job_id = submit(server, {**FAST, **SLOW, "video_length": "4"})
    try:
        wait_for(lambda: status(server, job_id)["status"] == "processing", timeout=120)
        body = httpx.get(f"{server.url}/worker/status", timeout=30).json()
        assert body["is_running"] is True and body["processing_job_id"] == job_id
        assert body["workers_alive"] >= 1
    finally:
        httpx.post(f"{server.url}/cancel/{job_id}", timeout=30)
    assert finished(server, job_id)["status"] == "cancelled"
    idle = httpx.get(f"{server.url}/worker/status", timeout=30).json()
    assert idle["is_running"] is False and idle["processing_job_id"] is None
