"""JOB_MEMORY_BUDGET_GB: a job whose estimated memory (frames × size) cannot fit is refused at
submit with a 422 that names the field and the limit, and nothing is written (issue 11 item 8)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from framepack_api.job_memory import GB, image_job_bytes, video_job_bytes
from framepack_api.params import ImageBatchParams, VideoParams

from .images.conftest import b64_png
from support.server import FAST, png_bytes


def _rows(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "framepack-api.db") as db:
        return int(db.execute("SELECT count(*) FROM jobs").fetchone()[0])


def _inputs(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / "files" / "inputs").rglob("*") if p.is_file()]


def _refusal(r: Any) -> tuple[str, str]:
    assert r.status_code == 422, r.text
    [detail] = r.json()["detail"]
    return str(detail["loc"][-1]), str(detail["msg"])


def test_the_estimate_grows_with_frames_and_size() -> None:
    short, _ = video_job_bytes(VideoParams(video_length=1, latent_window_size=9), 640)
    long, how = video_job_bytes(VideoParams(video_length=60, latent_window_size=9), 640)
    assert "1801 frames" in how  # 50 sections × 4 × 9 + 1
    assert long == 1801 * 640 * 640 * 27 and long > 40 * short
    small_batch, _ = image_job_bytes(ImageBatchParams(prompts=["a"] * 8, batch_size=1, width=512, height=512))
    big_batch, _ = image_job_bytes(ImageBatchParams(prompts=["a"] * 8, batch_size=4, width=512, height=512))
    assert big_batch == 4 * small_batch


def test_a_video_over_the_budget_is_refused_naming_video_length(make_client: Callable[..., TestClient],
                                                                tmp_path: Path) -> None:
    budget = 0.001  # ~1 MiB: a 0.3 s clip at 64 px (9 frames) fits, a 10 s one (305 frames) does not
    assert video_job_bytes(VideoParams(video_length=0.3, latent_window_size=2), 64)[0] < budget * GB
    with make_client(job_memory_budget_gb=budget, max_resolution=640) as api:
        image = {"image": ("in.png", png_bytes(), "image/png")}
        field, msg = _refusal(api.post("/generate", data={**FAST, "video_length": "10"}, files=image))
        assert field == "video_length"
        assert "JOB_MEMORY_BUDGET_GB" in msg and "0.001 GB" in msg and "305 frames" in msg
        assert _rows(tmp_path) == 0 and _inputs(tmp_path) == []

        ok = api.post("/generate", data=FAST, files=image)
        assert ok.status_code == 200, ok.text
        assert _rows(tmp_path) == 1


def test_image_jobs_over_the_budget_are_refused(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    # The real model's sizes (on the tiny one 256×256 would be scaled to its limit first).
    # 64×64: one image 6 MB fits, two together 12 MB do not.
    with make_client(job_memory_budget_gb=0.01, model="framepack") as api:
        field, msg = _refusal(api.post("/api/batch-images", json={
            "prompts": ["a", "b"], "batch_size": 2, "width": 64, "height": 64, "steps": 1}))
        assert field == "batch_size" and "0.01 GB" in msg and "2 image(s) of 64×64" in msg
        field, msg = _refusal(api.post("/api/generate-image", json={
            "prompt": "x", "width": 256, "height": 256, "steps": 1, "input_image": b64_png()}))
        assert field == "width" and "256×256" in msg
        assert _rows(tmp_path) == 0 and _inputs(tmp_path) == []

        ok = api.post("/api/batch-images", json={"prompts": ["a", "b"], "batch_size": 1, "width": 64, "height": 64,
                                                 "steps": 1})
        assert ok.status_code == 200, ok.text
        assert _rows(tmp_path) == 1


def test_no_budget_means_no_limit(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    with make_client(max_resolution=640) as api:
        r = api.post("/generate", data={**FAST, "video_length": "60"},
                     files={"image": ("in.png", png_bytes(), "image/png")})
        assert r.status_code == 200, r.text
