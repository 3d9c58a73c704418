"""The service on object storage end to end: real `framepack-api` processes, a real S3-compatible
server on loopback (moto), the tiny model. A worker on "another machine" (its own data directory)
shares only PostgreSQL and the store with the API, and every download route serves what it made."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from .conftest import S3Server
from support.server import Server, png_bytes


def job_files(data_dir: Path) -> list[str]:
    """Inputs, outputs and previews on a local disk (the database and logs do not count)."""
    files = data_dir / "files"
    return sorted(str(p.relative_to(files)) for area in ("inputs", "outputs", "previews")
                  for p in (files / area).rglob("*") if p.is_file())


@pytest.fixture
def remote_worker(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.terminate()
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_worker(data_dir: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    data_dir.mkdir(parents=True)
    full = {k: v for k, v in os.environ.items() if not k.startswith("FRAMEPACK_API_")}
    full.update({"FRAMEPACK_API_DATA_DIR": str(data_dir), "FRAMEPACK_API_MODEL": "tiny",
                 "FRAMEPACK_API_LEASE_SECONDS": "4", "FRAMEPACK_API_HEARTBEAT_SECONDS": "1",
                 "FRAMEPACK_API_POLL_INTERVAL_SECONDS": "0.1", **env})
    log = (data_dir / "worker.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", "framepack_api", "worker"], env=full, stdout=log,
                            stderr=subprocess.STDOUT)


def test_a_worker_with_its_own_disk_shares_only_postgres_and_the_store(
        s3: S3Server, pg_url: str, tmp_path: Path, remote_worker: list[subprocess.Popen[bytes]]) -> None:
    bucket = s3.new_bucket()
    env = {"FRAMEPACK_API_DATABASE_URL": pg_url, **s3.env(bucket)}
    api = Server(tmp_path / "api", workers=0, env=env).start()
    try:
        remote_worker.append(start_worker(tmp_path / "gpu-box", env))
        api.wait_until(lambda h: h["workers_alive"] >= 1, timeout=180)
        job = api.submit(seed=11)
        status = api.wait_for(job, timeout=120)
        assert status["status"] == "completed", status

        outputs = s3.keys(bucket, f"fp/outputs/{job}/")
        assert outputs == [f"fp/outputs/{job}/1/thumbnail.jpg", f"fp/outputs/{job}/1/video.mp4"]
        video = s3.read(bucket, f"fp/outputs/{job}/1/video.mp4")
        assert video[4:8] == b"ftyp"
        with api.client() as http:
            full = http.get(f"/result/{job}")
            assert full.status_code == 200 and full.content == video
            assert full.headers["content-type"] == "video/mp4" and full.headers["accept-ranges"] == "bytes"
            assert f'{job}.mp4' in full.headers["content-disposition"]
            part = http.get(f"/result/{job}", headers={"Range": "bytes=10-19"})
            assert part.status_code == 206 and part.content == video[10:20]
            assert part.headers["content-range"] == f"bytes 10-19/{len(video)}"
            assert http.get(f"/result/{job}", headers={"Range": "bytes=-7"}).content == video[-7:]
            beyond = http.get(f"/result/{job}", headers={"Range": f"bytes={len(video)}-"})
            assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(video)}"
            assert http.get(f"/download/video/{job}").content == video
            assert http.get(f"/input_image/{job}").content == s3.read(bucket, f"fp/inputs/{job}/image.png")
            assert http.get(f"/thumbnail/{job}").content == s3.read(bucket, f"fp/outputs/{job}/1/thumbnail.jpg")
            previews = s3.keys(bucket, f"fp/previews/{job}/")
            assert previews == [f"fp/previews/{job}/partial.mp4", f"fp/previews/{job}/preview.jpg"]
            preview = http.get(f"/preview/{job}")
            assert preview.content == s3.read(bucket, previews[1]) and preview.headers["cache-control"] == "no-store"
            assert http.get(f"/preview/{job}/video").content == s3.read(bucket, previews[0])
        # Neither machine keeps a job's files on its disk: the store holds them all.
        assert job_files(tmp_path / "api") == [] and job_files(tmp_path / "gpu-box") == []
        assert not any((tmp_path / "gpu-box" / "files" / "work").iterdir())
    finally:
        api.stop()


def test_redirect_downloads_images_openai_variants_and_deletion(s3: S3Server, tmp_path: Path) -> None:
    bucket = s3.new_bucket()
    env = {**s3.env(bucket), "FRAMEPACK_API_STORAGE_DOWNLOADS": "redirect", "FRAMEPACK_API_MAX_RESOLUTION": "64"}
    server = Server(tmp_path / "data", workers=1, env=env).start()
    try:
        with server.client() as http:
            created = http.post("/v1/videos", data={"prompt": "p", "seconds": "0.5", "size": "1280x720",
                                                    "steps": "1", "latent_window_size": "2"},
                                files={"input_reference": ("s.png", png_bytes(), "image/png")})
            assert created.status_code == 200, created.text
            video_id = created.json()["id"]
            image = http.post("/api/generate-image", json={"prompt": "x", "steps": 1, "width": 64, "height": 64,
                                                           "input_image": base64.b64encode(png_bytes()).decode()})
            assert image.status_code == 200, image.text
            image_id = image.json()["job_id"]
            assert server.wait_for(video_id, timeout=120)["status"] == "completed"
            assert server.wait_for(image_id, timeout=120)["status"] == "completed"

            moved = http.get(f"/v1/videos/{video_id}/content")
            assert moved.status_code == 307 and moved.headers["location"].startswith(s3.url)
            stored = s3.read(bucket, f"fp/outputs/{video_id}/1/video.mp4")
            assert httpx.get(moved.headers["location"]).content == stored
            followed = http.get(f"/v1/videos/{video_id}/content", follow_redirects=True)
            assert followed.content == stored and followed.headers["content-type"] == "video/mp4"
            ranged = http.get(f"/v1/videos/{video_id}/content", headers={"Range": "bytes=0-7"}, follow_redirects=True)
            assert ranged.status_code == 206 and ranged.content == stored[:8]  # the store answers Range itself
            thumb = http.get(f"/v1/videos/{video_id}/content", params={"variant": "thumbnail"}, follow_redirects=True)
            assert thumb.content == s3.read(bucket, f"fp/outputs/{video_id}/1/thumbnail.jpg")
            sheet = http.get(f"/v1/videos/{video_id}/content", params={"variant": "spritesheet"},
                             follow_redirects=True)
            assert sheet.content == s3.read(bucket, f"fp/outputs/{video_id}/1/spritesheet.jpg")  # made, then kept
            assert Image.open(io.BytesIO(sheet.content)).format == "JPEG"

            png = http.get(f"/result/{image_id}", follow_redirects=True)
            assert png.content == s3.read(bucket, f"fp/outputs/{image_id}/1/image.png")
            assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
            assert http.get(f"/result/{image_id}/0", follow_redirects=True).content == png.content
            assert http.get(f"/api/image/{image_id}", follow_redirects=True).content == png.content

            assert http.delete(f"/v1/videos/{video_id}").json()["deleted"] is True
        assert not [k for k in s3.keys(bucket) if video_id in k]
        assert [k for k in s3.keys(bucket) if image_id in k]
        assert job_files(tmp_path / "data") == []
    finally:
        server.stop()
