"""Extension jobs on the native API (no worker): what is accepted, what is recorded, and a 4xx naming
the field for each bad input."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from framepack_api.api.deps import AppState
from framepack_api.media.video import write_mp4

from support.server import png_bytes

K1, K2 = {"X-API-Key": "k1"}, {"X-API-Key": "k2"}
SMALL = {"prompt": "more", "steps": "1", "video_length": "0.3", "latent_window_size": "2"}


def mp4_bytes(tmp_path: Path, frames: int = 9, size: tuple[int, int] = (64, 48)) -> bytes:
    width, height = size
    video = np.stack([np.full((height, width, 3), 10 * t, np.uint8) for t in range(frames)])
    path = tmp_path / f"in-{frames}-{width}x{height}.mp4"
    write_mp4(video, path)
    return path.read_bytes()


@pytest.fixture
def api(make_client: Callable[..., TestClient]) -> Iterator[TestClient]:
    with make_client(api_keys=["k1", "k2"], max_upload_bytes=2_000_000) as client:
        yield client


def detail_loc(r: Any) -> list[str]:
    return [str(part) for part in r.json()["detail"][0]["loc"]]


def extend(api: TestClient, headers: dict[str, str], video: bytes | None = None, **fields: str) -> Any:
    files = {"video": ("in.mp4", video, "video/mp4")} if video is not None else None
    return api.post("/generate", data={**SMALL, **fields}, files=files, headers=headers)


def completed_video_job(api: TestClient, tmp_path: Path, headers: dict[str, str]) -> str:
    """A video job of the caller's, completed with a real MP4 as its result (as a worker would)."""
    r = api.post("/generate", data=SMALL, files={"image": ("a.png", png_bytes(), "image/png")}, headers=headers)
    job_id = str(r.json()["job_id"])
    state: AppState = api.app.state.framepack  # type: ignore[attr-defined]
    claimed = state.store.claim("w")
    assert claimed is not None and claimed.id == job_id
    source = tmp_path / "source.mp4"
    source.write_bytes(mp4_bytes(tmp_path, frames=13))
    state.storage.put_file(f"outputs/{job_id}/video.mp4", source)
    assert state.store.complete(claimed, {"video": f"outputs/{job_id}/video.mp4"}, seed=3)
    return job_id


def test_an_uploaded_mp4_is_queued_forward_at_its_own_size_and_recorded(api: TestClient, tmp_path: Path) -> None:
    r = extend(api, K1, mp4_bytes(tmp_path), extension_output="new")
    assert r.status_code == 200, r.text
    status = api.get(f"/status/{r.json()['job_id']}", headers=K1).json()
    params = status["params"]
    assert params["has_input_video"] is True and params["extend_job_id"] is None
    assert params["sampling_mode"] == "forward" and params["extension_output"] == "new"
    assert params["resolution"] == 64 and params["has_end_image"] is False  # sqrt(64·48) → 64, not 640
    state: AppState = api.app.state.framepack  # type: ignore[attr-defined]
    job = state.store.get(status["job_id"])
    assert set(job.inputs) == {"video"} and state.storage.read_bytes(job.inputs["video"])[4:8] == b"ftyp"


def test_a_completed_job_of_the_same_owner_is_extended_from_its_video(api: TestClient, tmp_path: Path) -> None:
    source = completed_video_job(api, tmp_path, K1)
    r = api.post("/generate", json={**SMALL, "extend_job_id": source}, headers=K1)
    assert r.status_code == 200, r.text
    state: AppState = api.app.state.framepack  # type: ignore[attr-defined]
    job = state.store.get(r.json()["job_id"])
    assert job.params["extend_job_id"] == source and job.params["has_input_video"] is True
    copied = state.storage.read_bytes(job.inputs["video"])
    assert copied == state.storage.read_bytes(f"outputs/{source}/video.mp4")
    # Another owner's job is not there at all, as everywhere.
    assert extend(api, K2, extend_job_id=source).status_code == 404


def test_json_base64_video_with_a_data_url(api: TestClient, tmp_path: Path) -> None:
    body = {**SMALL, "video": "data:video/mp4;base64," + base64.b64encode(mp4_bytes(tmp_path)).decode()}
    r = api.post("/generate", json=body, headers=K1)
    assert r.status_code == 200, r.text


def test_bad_inputs_are_4xx_naming_the_field(api: TestClient, tmp_path: Path) -> None:
    good = mp4_bytes(tmp_path)
    cases: list[tuple[Any, int, list[str]]] = [
        (extend(api, K1, b"not a video at all"), 422, ["body", "video"]),
        (extend(api, K1, good[: len(good) // 2]), 422, ["body", "video"]),  # truncated
        (extend(api, K1, mp4_bytes(tmp_path, frames=3)), 422, ["body", "video"]),  # too short
        (extend(api, K1, good, sampling_mode="reverse"), 422, ["body", "sampling_mode"]),
        (extend(api, K1, good, extension_output="all"), 422, ["body", "extension_output"]),
        (extend(api, K1, good, extend_job_id="x"), 422, ["body", "extend_job_id"]),  # both
    ]
    for r, code, loc in cases:
        assert r.status_code == code, r.text
        assert detail_loc(r) == loc, r.text
    with_image = api.post("/generate", data=SMALL, headers=K1, files={
        "video": ("in.mp4", good, "video/mp4"), "image": ("a.png", png_bytes(), "image/png")})
    assert with_image.status_code == 422 and detail_loc(with_image) == ["body", "image"]
    with_end = api.post("/generate", data=SMALL, headers=K1, files={
        "video": ("in.mp4", good, "video/mp4"), "end_image": ("a.png", png_bytes(), "image/png")})
    assert with_end.status_code == 422 and detail_loc(with_end) == ["body", "end_image"]
    unknown = extend(api, K1, extend_job_id="no-such-job")
    assert unknown.status_code == 404


def test_a_job_not_completed_is_a_409_naming_the_field(api: TestClient) -> None:
    r = api.post("/generate", data=SMALL, files={"image": ("a.png", png_bytes(), "image/png")}, headers=K1)
    pending = r.json()["job_id"]
    r = extend(api, K1, extend_job_id=pending)
    assert r.status_code == 409 and r.json()["detail"].startswith("extend_job_id: "), r.text


def test_a_video_over_the_length_limit_is_a_413(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    with make_client(max_video_seconds=0.2) as api:  # 6 frames at 30 fps
        r = extend(api, {}, mp4_bytes(tmp_path, frames=9), video_length="0.1")
    assert r.status_code == 413 and detail_loc(r) == ["body", "video"], r.text


