"""A keyframe job end to end: real server, real worker process, real tiny pipeline, over HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np

from framepack_api.media.video import read_frames
from framepack_api.params import frame_count, total_sections

from support.server import FAST, Server, png_bytes


def run(server: Server, fields: dict[str, str], keyframes: list[bytes], dest: Path) -> tuple[dict, np.ndarray]:
    files = [("image", ("a.png", png_bytes(), "image/png")),
             ("end_image", ("e.png", png_bytes(color=(0, 0, 255)), "image/png")),
             *[("keyframe_images", (f"k{i}.png", k, "image/png")) for i, k in enumerate(keyframes)]]
    r = httpx.post(f"{server.url}/generate", data={**FAST, "video_length": "1.2", **fields}, files=files, timeout=30)
    assert r.status_code == 200, r.text
    status = server.wait_for(r.json()["job_id"])
    assert status["status"] == "completed", status
    video = httpx.get(f"{server.url}{status['result_url']}", timeout=30)
    assert video.status_code == 200
    dest.write_bytes(video.content)
    return status, read_frames(dest)


def test_a_keyframe_job_completes_and_the_keyframe_shapes_the_video(server: Server, tmp_path: Path) -> None:
    status, keyed = run(server, {"keyframe_times": "0.5"}, [png_bytes(color=(0, 255, 0))], tmp_path / "k.mp4")
    # window 2, 1.2 s: 4 sections ending at 0.267, 0.533, 0.8, 1.067 s; 0.5 s pins the end of the second.
    assert status["keyframes"] == [{"time": 0.5, "section": 2, "pinned_at": 0.5333}]
    assert status["params"]["keyframe_times"] == [0.5] and status["params"]["has_end_image"] is True
    assert keyed.shape[0] == frame_count(total_sections(1.2, 2), 2)
    _, plain = run(server, {}, [], tmp_path / "p.mp4")  # the same job without the keyframe
    assert float(np.abs(keyed.astype(np.int16) - plain.astype(np.int16)).mean()) > 1
