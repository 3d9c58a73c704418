"""The official `openai` SDK, unchanged, against a real server on loopback."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI
from openai.types import Video
from PIL import Image

from _servers import QUICK, SLOW, Server, png_bytes, wait_for
from framepack_api.api.video_requests import local_bucket
from framepack_api.media.video import read_mp4_info
from framepack_api.params import frame_count, total_sections


def expected_size(width: int, height: int) -> str:
    _, bw, bh = local_bucket(width, height, 64)  # the test servers' MAX_RESOLUTION
    return f"{bw}x{bh}"


def test_create_and_poll_then_download_list_delete(sdk: OpenAI, local_server: Server, tmp_path: Path) -> None:
    video = sdk.videos.create_and_poll(
        prompt="a runner doing high knees", model="framepack", seconds="0.5", size="1280x720",
        input_reference=("start.png", png_bytes(), "image/png"), extra_body=QUICK)
    assert video.status == "completed", video.error
    assert video.object == "video" and video.model == "framepack" and video.progress == 100
    # size is what was asked (the SDK's VideoSize allows only OpenAI's sizes); frame_size what was made.
    assert video.seconds == "0.5" and video.size == "1280x720"
    assert video.frame_size == expected_size(1280, 720) == "80x48"  # type: ignore[attr-defined]
    strict = Video.model_validate(video.model_dump(), strict=True)
    assert strict.size == "1280x720" and strict.frame_size == "80x48"  # type: ignore[attr-defined]
    assert video.prompt == "a runner doing high knees" and video.error is None
    assert video.completed_at is not None and video.completed_at >= video.created_at
    assert video.expires_at is None  # video_expiry_seconds is 0: kept until deleted

    content = sdk.videos.download_content(video.id)
    mp4 = tmp_path / "out.mp4"
    content.write_to_file(mp4)
    info = read_mp4_info(mp4)
    assert mp4.read_bytes()[4:8] == b"ftyp"
    assert (info["width"], info["height"]) == (80, 48)
    assert info["frames"] == frame_count(total_sections(0.5, 2), 2) == 17

    thumb = Image.open(io.BytesIO(sdk.videos.download_content(video.id, variant="thumbnail").content))
    assert thumb.format == "JPEG" and thumb.size == (80, 48)
    sheet = Image.open(io.BytesIO(sdk.videos.download_content(video.id, variant="spritesheet").content))
    assert sheet.format == "JPEG" and sheet.size == (4 * 80, 4 * 48)  # 16 of the 17 frames, 4x4

    listed = [v.id for v in sdk.videos.list(order="desc")]
    assert video.id in listed

    deleted = sdk.videos.delete(video.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (video.id, "video.deleted", True)
    with pytest.raises(openai.NotFoundError) as err:
        sdk.videos.retrieve(video.id)
    assert err.value.body["code"] == "video_not_found"  # type: ignore[index]
    assert not (local_server.data_dir / "files" / "outputs" / video.id).exists()
    assert not (local_server.data_dir / "files" / "inputs" / video.id).exists()
    with local_server.http() as http:
        assert http.get(f"/status/{video.id}").status_code == 404  # the job's row went too


def test_text_to_video_f1_from_a_neutral_start(sdk: OpenAI, local_server: Server) -> None:
    video = sdk.videos.create_and_poll(prompt="waves", model="framepack-f1", seconds="0.5", size="720x1280",
                                       extra_body=QUICK)
    assert video.status == "completed", video.error
    assert video.size == "720x1280" and video.frame_size == expected_size(720, 1280) == "48x80"  # type: ignore[attr-defined]
    with local_server.http() as http:
        job = http.get(f"/status/{video.id}").json()
    assert job["params"]["sampling_mode"] == "forward"
    assert job["params"]["steps"] == 1 and job["params"]["video_length"] == 0.5
    start = local_server.data_dir / "files" / "inputs" / video.id / "image.png"
    pixels = set(Image.open(start).convert("RGB").getdata())
    assert pixels == {(128, 128, 128)}  # the neutral grey start, at the bucket's size
    assert Image.open(start).size == (48, 80)


def test_list_pages_with_after_and_limit(sdk: OpenAI) -> None:
    made = [sdk.videos.create(prompt=f"page {i}", seconds="0.5", extra_body=QUICK).id for i in range(3)]
    first = sdk.videos.list(limit=2, order="desc")
    assert len(first.data) == 2 and first.has_more is True
    assert [v.id for v in first.data] == made[::-1][:2]
    second = sdk.videos.list(limit=2, order="desc", after=first.data[-1].id)
    assert second.data[0].id == made[0]
    everything = [v.id for v in sdk.videos.list(limit=1, order="asc")]  # the SDK follows last_id
    assert everything.index(made[0]) < everything.index(made[1]) < everything.index(made[2])
    for video_id in made:
        sdk.videos.poll(video_id, poll_interval_ms=100)
        sdk.videos.delete(video_id)


def test_delete_cancels_a_running_video(sdk: OpenAI, local_server: Server) -> None:
    video = sdk.videos.create(prompt="long", seconds="4", extra_body=SLOW)
    wait_for(lambda: sdk.videos.retrieve(video.id).status == "in_progress", timeout=60)
    assert sdk.videos.delete(video.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        sdk.videos.retrieve(video.id)
    with local_server.http() as http:
        # The worker stopped at its next step; the row and the files went with the delete.
        assert http.get(f"/status/{video.id}").status_code == 404
    assert not (local_server.data_dir / "files" / "inputs" / video.id).exists()


def test_json_body_with_data_url_and_poll_header(local_server: Server) -> None:
    import base64

    data_url = "data:image/png;base64," + base64.b64encode(png_bytes(64, 96)).decode()
    with local_server.http() as http:
        r = http.post("/v1/videos", json={"prompt": "json", "seconds": "0.5", "size": "480x640",
                                          "input_reference": {"image_url": data_url}, **QUICK})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] in ("queued", "in_progress") and body["size"] == "480x640"
        assert body["frame_size"] == expected_size(480, 640)
        assert r.headers["openai-poll-after-ms"] == "100"

        def finished() -> httpx.Response | None:
            resp = http.get(f"/v1/videos/{body['id']}")
            return resp if resp.json()["status"] == "completed" else None

        final = wait_for(finished, timeout=60)
        assert "openai-poll-after-ms" not in final.headers  # nothing left to poll for
        http.delete(f"/v1/videos/{body['id']}")
