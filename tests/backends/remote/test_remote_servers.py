"""The remote backend for real: a forwarder server whose worker sends every job to an origin server."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import OpenAI

from _servers import QUICK, SLOW, Server, png_bytes, wait_for
from framepack_api.media.video import read_mp4_info


def sdk_for(server: Server) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=30)


def origin_video_with_prompt(origin: Server, prompt: str) -> dict[str, Any] | None:
    with origin.http() as http:
        videos = http.get("/v1/videos", params={"limit": 100}).json()["data"]
    return next((v for v in videos if v["prompt"] == prompt), None)


def test_forwarded_video_completes(forwarder: Server, origin: Server, tmp_path: Path) -> None:
    sdk = sdk_for(forwarder)
    prompt = f"forwarded {uuid.uuid4()}"
    video = sdk.videos.create_and_poll(prompt=prompt, seconds="0.5", size="1280x720",
                                       input_reference=("s.png", png_bytes(), "image/png"), extra_body=QUICK)
    assert video.status == "completed", video.error
    assert (video.size, video.seconds, video.model) == ("1280x720", "0.5", "framepack")
    assert video.frame_size == "80x48"  # type: ignore[attr-defined]  # from the finished MP4
    sdk.videos.download_content(video.id).write_to_file(tmp_path / "v.mp4")
    info = read_mp4_info(tmp_path / "v.mp4")
    assert (info["width"], info["height"], info["frames"]) == (80, 48, 17)

    with forwarder.http() as http:
        job = http.get(f"/status/{video.id}").json()
    # multipart carries every field as text; the origin parses it like any other request
    assert job["type"] == "remote_video" and job["params"]["extra"]["steps"] == "1"
    remote = origin_video_with_prompt(origin, prompt)
    assert remote is not None and remote["status"] == "completed" and remote["size"] == "1280x720"
    assert remote["frame_size"] == "80x48"
    with origin.http() as http:
        origin_mp4 = http.get(f"/v1/videos/{remote['id']}/content").content
    assert origin_mp4 == (tmp_path / "v.mp4").read_bytes()  # downloaded, byte for byte


def test_a_refusal_by_the_remote_fails_the_job(forwarder: Server, origin: Server) -> None:
    sdk = sdk_for(forwarder)
    prompt = f"refused {uuid.uuid4()}"
    # The forwarder passes model knobs through unchecked; the origin refuses steps=0.
    video = sdk.videos.create_and_poll(prompt=prompt, seconds="0.5", extra_body={"steps": 0},
                                       poll_interval_ms=100)
    assert video.status == "failed" and video.error is not None
    assert video.error.code == "generation_failed"
    assert "refused" in video.error.message and "steps" in video.error.message
    assert origin_video_with_prompt(origin, prompt) is None


def test_a_remote_failure_mid_run_fails_the_job(forwarder: Server, origin: Server) -> None:
    sdk = sdk_for(forwarder)
    prompt = f"fails remotely {uuid.uuid4()}"
    video = sdk.videos.create(prompt=prompt, seconds="4", extra_body=SLOW)
    remote = wait_for(lambda: origin_video_with_prompt(origin, prompt), timeout=60)
    with origin.http() as http:  # the origin's operator cancels it: the origin reports it failed
        assert http.post(f"/cancel/{remote['id']}").status_code == 200
    final = sdk.videos.poll(video.id, poll_interval_ms=100)
    assert final.status == "failed" and final.error is not None
    assert "[cancelled]" in final.error.message and remote["id"] in final.error.message


def test_cancel_deletes_the_remote_video(forwarder: Server, origin: Server) -> None:
    sdk = sdk_for(forwarder)
    prompt = f"cancelled {uuid.uuid4()}"
    video = sdk.videos.create(prompt=prompt, seconds="4", extra_body=SLOW)
    remote = wait_for(lambda: (v := origin_video_with_prompt(origin, prompt)) and v["status"] == "in_progress"
                      and v, timeout=60)
    assert sdk.videos.delete(video.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        sdk.videos.retrieve(video.id)
    with origin.http() as http:
        wait_for(lambda: http.get(f"/v1/videos/{remote['id']}").status_code == 404, timeout=30)
        assert http.get(f"/status/{remote['id']}").status_code == 404  # gone from the origin entirely


def test_training_service_through_the_remote(forwarder: Server, origin: Server) -> None:
    run_id = int(uuid.uuid4().int % 10**9)
    with forwarder.http() as http:
        started = http.post("/api/video-generation/generate", json={"run_id": run_id, "drill_text": "skips"})
        assert started.status_code == 200 and started.json()["run_id"] == run_id

        def done() -> dict[str, Any] | None:
            body = http.get(f"/api/video-generation/status/{run_id}").json()
            assert body["status"] not in ("failed", "cancelled"), body
            return body if body["status"] == "completed" else None

        status = wait_for(done, timeout=60)
        mp4 = http.get(status["video_url"])
        assert mp4.status_code == 200 and mp4.headers["content-type"] == "video/mp4"
        assert mp4.content[4:8] == b"ftyp"
        assert http.get("/api/video-generation/").json()["backend"] == "remote"
    assert origin_video_with_prompt(origin, "An athlete demonstrates this training drill with clear, correct form, "
                                            "whole body in view, steady camera, plain background: skips")
