"""Video extension and remix through the official `openai` SDK, unchanged, against a real server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
from openai import OpenAI, omit
from openai.types import Video

from _servers import QUICK, Server, png_bytes
from framepack_api.media.video import read_frames

WINDOW = QUICK["latent_window_size"]


def frames_of(sdk: OpenAI, video_id: str, path: Path) -> np.ndarray:
    sdk.videos.download_content(video_id).write_to_file(path)
    return read_frames(path)


def source_video(sdk: OpenAI) -> Video:
    video = sdk.videos.create_and_poll(prompt="a runner", model="framepack-f1", seconds="0.5", size="1280x720",
                                       input_reference=("start.png", png_bytes(), "image/png"), extra_body=QUICK)
    assert video.status == "completed", video.error
    return video


def test_extend_a_finished_video_by_id_gives_the_whole_video(sdk: OpenAI, tmp_path: Path) -> None:
    source = source_video(sdk)
    before = frames_of(sdk, source.id, tmp_path / "source.mp4")
    # SDK 3.57's extend() cannot send its own {"id": ...} form (its file extraction refuses a dict), so
    # the reference goes in extra_body, which the SDK encodes as the same multipart field video[id].
    with pytest.raises(RuntimeError, match="Expected entry at `video`"):
        sdk.videos.extend(prompt="keeps running", seconds="4", video={"id": source.id})
    extended = sdk.videos.extend(prompt="keeps running", seconds="0.5", video=omit,  # type: ignore[arg-type]
                                 extra_body={"video": {"id": source.id}, **QUICK})
    assert extended.id != source.id and extended.model == "framepack-f1" and extended.seconds == "0.5"
    assert extended.prompt == "keeps running" and extended.frame_size == "80x48"  # type: ignore[attr-defined]
    done = sdk.videos.poll(extended.id, poll_interval_ms=100)
    assert done.status == "completed", done.error
    after = frames_of(sdk, done.id, tmp_path / "extended.mp4")
    added = 4 * 2 * WINDOW  # 0.5 s at window 2: two sections of 8 frames
    assert after.shape == (before.shape[0] + added, *before.shape[1:])
    # The source comes first, frame for frame (the tiny model's noise survives x264 within a few levels).
    error = np.abs(after[: before.shape[0]].astype(int) - before.astype(int)).mean()
    assert error < 8, error


def test_extend_an_uploaded_mp4_keeping_only_the_new_part(sdk: OpenAI, tmp_path: Path) -> None:
    source = source_video(sdk)
    sdk.videos.download_content(source.id).write_to_file(tmp_path / "up.mp4")
    extended = sdk.videos.extend(prompt="then stops", seconds="0.3", extra_body={**QUICK, "extension_output": "new"},
                                 video=("up.mp4", (tmp_path / "up.mp4").read_bytes(), "video/mp4"))
    done = sdk.videos.poll(extended.id, poll_interval_ms=100)
    assert done.status == "completed", done.error
    new = frames_of(sdk, done.id, tmp_path / "new.mp4")
    assert new.shape == (4 * 1 * WINDOW, 48, 80, 3)  # 0.3 s at window 2: one section, new frames only


def test_remix_reuses_the_inputs_settings_and_seed_with_a_new_prompt(sdk: OpenAI, local_server: Server) -> None:
    source = source_video(sdk)
    remix = sdk.videos.remix(source.id, prompt="a walker")
    assert remix.remixed_from_video_id == source.id and remix.prompt == "a walker"
    assert (remix.model, remix.seconds, remix.size) == (source.model, source.seconds, source.size)
    with local_server.http() as http:
        before: dict[str, Any] = http.get(f"/status/{source.id}").json()
        after: dict[str, Any] = http.get(f"/status/{remix.id}").json()
    assert before["params"]["seed"] == -1 and after["params"]["seed"] == before["seed"]  # the seed it drew
    changed = {k for k in after["params"] if after["params"][k] != before["params"].get(k)}
    assert changed == {"prompt", "remixed_from", "seed"}
    assert sdk.videos.retrieve(remix.id).remixed_from_video_id == source.id
    assert sdk.videos.poll(remix.id, poll_interval_ms=100).status == "completed"


def test_errors_are_openai_shaped(sdk: OpenAI, tmp_path: Path) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.videos.extend(prompt="x", seconds="4", video=omit,  # type: ignore[arg-type]
                          extra_body={"video": {"id": "no-such-video"}})
    assert missing.value.body["code"] == "video_not_found"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as no_video:
        sdk.videos.extend(prompt="x", seconds="4", video=omit)  # type: ignore[arg-type]
    assert no_video.value.body["param"] == "video"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as not_mp4:
        sdk.videos.extend(prompt="x", seconds="4", video=("a.mp4", b"not a video", "video/mp4"))
    assert not_mp4.value.body["param"] == "video"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        sdk.videos.remix("no-such-video", prompt="x")
    with pytest.raises(openai.BadRequestError) as edit:
        sdk.videos.edit(prompt="x", video=("a.mp4", b"x", "video/mp4"))
    assert edit.value.body["code"] == "unsupported_endpoint"  # type: ignore[index]
