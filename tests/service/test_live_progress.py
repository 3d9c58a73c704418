"""Live progress against a real server: server-sent events, resuming, metrics, thumbnails, ETA."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from framepack_api.client import Client, ServerEvent
from framepack_api.media.video import read_mp4_info
from framepack_api.params import frame_count, total_sections

from support.server import Server

LONGER = {"steps": 6, "video_length": 0.8, "latent_window_size": 2, "resolution": 64}


def collect(server: Server, job_id: str, last_event_id: int | None = None) -> list[ServerEvent]:
    with Client(server.url) as api:
        return list(api.events(job_id, last_event_id=last_event_id, read_timeout=60))


def test_events_arrive_in_order_with_rising_progress_and_end_with_the_terminal_event(server: Server) -> None:
    job_id = server.submit(**LONGER)
    events = collect(server, job_id)
    kinds = [e.kind for e in events]
    assert kinds[0] == "status" and events[0].data["status"] == "pending"
    assert kinds[-2:] == ["status", "completed"]
    assert [e.id for e in events] == sorted(e.id for e in events)
    progress = [e.data["progress"] for e in events if e.kind == "progress"]
    # 100 is the completed state only: the last step's progress stops at 99 while the video is written.
    assert len(progress) >= 2 and progress == sorted(progress) and progress[-1] == 99.0
    assert events[-1].data["progress"] == 100.0
    statuses = [e.data["status"] for e in events if e.kind == "status"]
    assert statuses == ["pending", "processing", "completed"]
    last_progress = [e for e in events if e.kind == "progress"][-1].data
    sections = total_sections(0.8, 2)
    assert (last_progress["section"], last_progress["total_sections"]) == (sections, sections) == (3, 3)
    assert "eta_seconds" in last_progress


def test_resuming_with_last_event_id_skips_nothing(server: Server) -> None:
    job_id = server.submit(**LONGER)
    everything = collect(server, job_id)
    middle = everything[len(everything) // 2]
    resumed = collect(server, job_id, last_event_id=middle.id)
    assert [e.id for e in resumed] == [e.id for e in everything if e.id > middle.id]
    assert resumed[-1].kind == "completed"


def test_events_of_an_unknown_job_are_404(server: Server) -> None:
    r = httpx.get(f"{server.url}/events/nope")
    assert r.status_code == 404 and "not found" in r.json()["detail"]


def test_the_global_stream_sees_jobs_it_did_not_ask_for(server: Server) -> None:
    seen: list[ServerEvent] = []
    ready = threading.Event()

    def listen() -> None:
        with Client(server.url) as api:
            ready.set()
            for event in api.events(read_timeout=30):
                seen.append(event)
                if event.kind == "completed":
                    return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    ready.wait(5)
    time.sleep(0.5)
    job_id = server.submit()
    thread.join(60)
    assert [e.kind for e in seen if e.data["job_id"] == job_id][-1] == "completed"


def test_cancelled_job_stream_ends_with_cancelled(server: Server) -> None:
    job_id = server.submit(steps=60, video_length=3, latent_window_size=3, resolution=128)
    server.wait_for(job_id, ("processing",))
    httpx.post(f"{server.url}/cancel/{job_id}")
    events = collect(server, job_id)
    assert events[-1].kind == "cancelled" and events[-1].data["status"] == "cancelled"


def test_thumbnail_is_the_input_then_a_result_frame(server: Server) -> None:
    server.wait_until(lambda h: h["workers_alive"] >= 1)
    job_id = server.submit(steps=60, video_length=3, latent_window_size=3, resolution=128)
    before = Image.open(io.BytesIO(httpx.get(f"{server.url}/thumbnail/{job_id}").content))
    assert before.size == (160, 120)  # the uploaded image, not yet a video frame
    httpx.post(f"{server.url}/cancel/{job_id}")
    done_id = server.submit()
    server.wait_for(done_id)
    after = Image.open(io.BytesIO(httpx.get(f"{server.url}/thumbnail/{done_id}").content))
    assert after.format == "JPEG" and after.size != (160, 120)


def test_metrics_parse_and_count_jobs(server: Server) -> None:
    job_id = server.submit()
    server.wait_for(job_id)
    text = httpx.get(f"{server.url}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    completed = [s for s in families["framepack_jobs"].samples if s.labels == {"status": "completed"}]
    assert completed[0].value >= 1
    assert families["framepack_workers_alive"].samples[0].value == 1
    duration = families["framepack_job_duration_seconds"]
    count = next(s for s in duration.samples if s.name.endswith("_count")).value
    assert count == completed[0].value
    assert families["framepack_sampling_steps_per_second"].samples[0].value > 0
    assert "framepack_job_queue_seconds" in families and "framepack_queue_depth" in families


def test_status_of_a_waiting_job_has_a_position_and_an_eta(server: Server) -> None:
    server.wait_for(server.submit())  # history to learn the speed from
    running = server.submit(steps=30, video_length=2, latent_window_size=3, resolution=128)
    waiting = server.submit()
    server.wait_for(running, ("processing",))
    status = httpx.get(f"{server.url}/status/{waiting}").json()
    assert status["queue_position"] == 1
    assert status["eta_seconds"] is not None and status["eta_seconds"] > 0
    httpx.post(f"{server.url}/cancel/{running}")
    server.wait_for(waiting)


@pytest.mark.parametrize("flag", ["--help"])
def test_cli_help_mentions_every_command(flag: str) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "framepack_api", flag], capture_output=True, text=True).stdout
    for command in ("serve", "worker", "generate", "jobs", "models", "db"):
        assert command in out


def test_preview_jpeg_and_partial_mp4_while_the_job_runs(server: Server, tmp_path: Path) -> None:
    job_id = server.submit(steps=8, video_length=4, latent_window_size=3, resolution=64)
    deadline = time.monotonic() + 90
    preview = partial = None
    while time.monotonic() < deadline and (preview is None or partial is None):
        status = httpx.get(f"{server.url}/status/{job_id}").json()
        assert status["status"] in ("pending", "processing"), "the job ended before both were seen"
        if preview is None and status["preview_url"]:
            r = httpx.get(f"{server.url}{status['preview_url']}")
            if r.status_code == 200:
                preview = Image.open(io.BytesIO(r.content))
        if partial is None and status["partial_video_url"]:
            r = httpx.get(f"{server.url}{status['partial_video_url']}")
            if r.status_code == 200:
                (tmp_path / "partial.mp4").write_bytes(r.content)
                partial = (read_mp4_info(tmp_path / "partial.mp4"), status["section"])
        time.sleep(0.05)
    assert preview is not None and preview.format == "JPEG" and preview.size[0] > 0
    assert partial is not None
    info, _section = partial
    total = frame_count(total_sections(4, 3), 3)
    assert 0 < info["frames"] < total  # the video so far, not the whole one
    final = server.wait_for(job_id)
    assert final["status"] == "completed"
    events = collect(server, job_id)
    assert any(e.kind == "preview" and e.data["preview_url"] == f"/preview/{job_id}" for e in events)
