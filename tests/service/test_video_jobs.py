"""A real server with a real worker process running the real tiny pipeline, over HTTP."""

from __future__ import annotations

import base64
import threading
from pathlib import Path

import httpx

from framepack_api.media.images import find_nearest_bucket
from framepack_api.media.video import read_mp4_info
from framepack_api.params import frame_count, total_sections

from support.server import FAST, Server, png_bytes


def download(server: Server, job_id: str, dest: Path) -> dict[str, object]:
    r = httpx.get(f"{server.url}/result/{job_id}", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    dest.write_bytes(r.content)
    return read_mp4_info(dest)


def test_reverse_job_makes_an_mp4_with_framepack_frame_count_and_bucket_size(
    server: Server, tmp_path: Path
) -> None:
    job_id = server.submit(video_length=0.6, latent_window_size=2, steps=2, resolution=64)
    status = server.wait_for(job_id)
    assert status["status"] == "completed", status
    sections = total_sections(0.6, 2)
    assert sections == 2
    info = download(server, job_id, tmp_path / "v.mp4")
    assert info["frames"] == frame_count(sections, 2) == 17
    height, width = find_nearest_bucket(120, 160, 64)
    assert (info["width"], info["height"]) == (width, height)
    assert status["seed"] == 7 and status["total_sections"] == 2 and status["progress"] == 100.0
    assert status["params"]["resolution"] == 64 and status["params"]["sampling_mode"] == "reverse"


def test_forward_job_from_json_base64(server: Server, tmp_path: Path) -> None:
    body = {**FAST, "image": base64.b64encode(png_bytes((96, 160))).decode(), "sampling_mode": "forward",
            "latent_window_size": 3, "video_length": 0.4, "seed": -1}
    r = httpx.post(f"{server.url}/generate", json=body, timeout=30)
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]
    status = server.wait_for(job_id)
    assert status["status"] == "completed", status
    assert 0 <= status["seed"] < 2**32 and status["params"]["seed"] == -1  # the drawn seed is recorded
    info = download(server, job_id, tmp_path / "f.mp4")
    assert info["frames"] == frame_count(total_sections(0.4, 3), 3)
    assert (info["height"], info["width"]) == find_nearest_bucket(160, 96, 64)


def test_end_image_in_reverse_mode(server: Server, tmp_path: Path) -> None:
    r = httpx.post(f"{server.url}/generate", data=FAST, timeout=30, files={
        "image": ("a.png", png_bytes(), "image/png"),
        "end_image": ("b.png", png_bytes(color=(0, 0, 255)), "image/png")})
    assert r.status_code == 200, r.text
    status = server.wait_for(r.json()["job_id"])
    assert status["status"] == "completed" and status["params"]["has_end_image"] is True


def test_result_supports_range_requests(server: Server) -> None:
    job_id = server.submit()
    server.wait_for(job_id)
    full = httpx.get(f"{server.url}/result/{job_id}").content
    part = httpx.get(f"{server.url}/result/{job_id}", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == full[10:20]


def test_result_of_unknown_and_unfinished_jobs(server: Server) -> None:
    missing = httpx.get(f"{server.url}/result/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and "not found" in missing.json()["detail"]
    job_id = server.submit(steps=40, video_length=2, latent_window_size=3, resolution=128)
    early = httpx.get(f"{server.url}/result/{job_id}")
    assert early.status_code == 409 and early.json()["status"] in ("pending", "processing")
    httpx.post(f"{server.url}/cancel/{job_id}")
    server.wait_for(job_id)


def test_cancel_pending_at_once_and_running_at_the_next_step(server: Server) -> None:
    running = server.submit(steps=60, video_length=3, latent_window_size=3, resolution=128)
    waiting = server.submit()
    server.wait_for(running, ("processing",))
    queued = httpx.get(f"{server.url}/status/{waiting}").json()
    assert queued["status"] == "pending" and queued["queue_position"] == 1
    queue = httpx.get(f"{server.url}/queue").json()["queue"]
    assert [e["job_id"] for e in queue[:2]] == [waiting, running]
    assert (queue[0]["position"], queue[1]["status"]) == (1, "processing")

    cancelled = httpx.post(f"{server.url}/cancel/{waiting}").json()
    assert cancelled["status"] == "cancelled"
    assert httpx.post(f"{server.url}/cancel/{waiting}").json()["status"] == "cancelled"  # idempotent

    flagged = httpx.post(f"{server.url}/cancel/{running}").json()
    assert flagged["cancel_requested"] is True
    final = server.wait_for(running, timeout=30)
    assert final["status"] == "cancelled" and final["progress"] < 100
    # The worker is free again and takes the next job.
    assert server.wait_for(server.submit())["status"] == "completed"


def test_idempotency_key_gives_the_same_job(server: Server) -> None:
    headers = {"Idempotency-Key": "retry-me-1"}
    files = {"image": ("in.png", png_bytes(), "image/png")}
    first = httpx.post(f"{server.url}/generate", data=FAST, files=files, headers=headers)
    again = httpx.post(f"{server.url}/generate", data=FAST, files=files, headers=headers)
    assert first.status_code == 200 and again.status_code == 200
    assert first.json()["message"] == "Job queued" and "Idempotency-Key" in again.json()["message"]
    assert first.json()["job_id"] == again.json()["job_id"]
    other = httpx.post(f"{server.url}/generate", data={**FAST, "prompt": "different"}, files=files,
                       headers=headers)
    assert other.status_code == 409 and "Idempotency-Key" in other.json()["detail"]


def test_200_concurrent_submits_are_200_distinct_jobs(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data", workers=0).start()
    try:
        image = png_bytes((64, 64))
        ids: list[str] = []
        errors: list[str] = []
        lock = threading.Lock()

        def submit_many(n: int) -> None:
            with httpx.Client(base_url=srv.url, timeout=60) as http:
                for _ in range(n):
                    r = http.post("/generate", data=FAST, files={"image": ("i.png", image, "image/png")})
                    with lock:
                        (ids if r.status_code == 200 else errors).append(r.json().get("job_id", r.text))

        threads = [threading.Thread(target=submit_many, args=(10,)) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and len(ids) == 200 and len(set(ids)) == 200
        queue = httpx.get(f"{srv.url}/queue").json()["queue"]
        assert sorted(e["job_id"] for e in queue) == sorted(ids)
        assert [e["position"] for e in queue] == list(range(1, 201))
        inputs = list((srv.data_dir / "files" / "inputs").iterdir())
        assert len(inputs) == 200
    finally:
        srv.stop()
