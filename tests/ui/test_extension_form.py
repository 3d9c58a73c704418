"""The Video tab's extension inputs: its real submit handler against a real server and worker (no browser)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("gradio")

import gradio as gr

from framepack_api.client import Client
from framepack_api.media.video import read_frames
from framepack_api.ui.context import UIContext
from framepack_api.ui.extend import fill_extension
from framepack_api.ui.forms import Form
from framepack_api.ui.job_view import render_job
from framepack_api.ui.video_tab import build_video_tab

from support.server import Server, png_bytes
from support.ui_forms import press_submit

QUICK = {"prompt": "more", "video_length": 0.3, "latent_window_size": 2, "steps": 1, "use_teacache": False,
         "resolution": 64}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("ui-extend")).start()
    yield srv
    srv.stop()


def video_form(server: Server) -> tuple[Form, Callable[..., list[Any]]]:
    """The tab as the page builds it, and its 'Add to queue' handler."""
    with gr.Blocks() as blocks:
        form, _names, _refresh, _section = build_video_tab(UIContext(server.url), gr.State())
    [handler] = [f.fn for f in blocks.fns.values() if f.fn is not None and f.fn.__name__ == "on_submit"]
    return form, handler


def test_extend_a_finished_job_by_id_then_an_upload_keeping_the_new_part(server: Server, tmp_path: Path) -> None:
    form, handler = video_form(server)
    with Client(server.url) as api:
        image = tmp_path / "start.png"
        image.write_bytes(png_bytes((96, 64)))
        source = api.submit_video(image, sampling_mode="forward", seed=1, **QUICK)["job_id"]
        assert api.wait(source)["status"] == "completed"
        api.download(source, tmp_path / "source.mp4")
        before = read_frames(tmp_path / "source.mp4")

        errors, job_id = press_submit(form, handler, extend_job_id=f" {source} ", **QUICK)
        assert errors == {} and isinstance(job_id, str), errors
        status = api.wait(job_id)
        assert status["status"] == "completed", status
        assert status["params"]["extend_job_id"] == source and status["params"]["sampling_mode"] == "forward"
        api.download(job_id, tmp_path / "whole.mp4")
        assert read_frames(tmp_path / "whole.mp4").shape[0] == before.shape[0] + 8  # one section of 2·4 frames

        errors, job_id = press_submit(form, handler, video=str(tmp_path / "source.mp4"), extension_output="new",
                                      **QUICK)
        assert errors == {}, errors
        assert api.wait(job_id)["status"] == "completed"
        api.download(job_id, tmp_path / "new.mp4")
        assert read_frames(tmp_path / "new.mp4").shape == (8, *before.shape[1:])


def test_errors_show_next_to_the_extension_fields(server: Server, tmp_path: Path) -> None:
    form, handler = video_form(server)
    image = tmp_path / "start.png"
    image.write_bytes(png_bytes())
    errors, _ = press_submit(form, handler, extend_job_id="x", image=str(image), **QUICK)
    assert set(errors) == {"image"}  # refused before any request
    errors, _ = press_submit(form, handler, video=str(image), **QUICK)
    assert set(errors) == {"video"} and "at least 5" in errors["video"]  # FFmpeg reads a PNG as one frame
    errors, _ = press_submit(form, handler, extend_job_id="no-such-job", **QUICK)
    assert errors == {}  # a 404 is a general error, not a field's


def test_extend_this_video_from_the_job_view_fills_the_section_and_submits(server: Server, tmp_path: Path) -> None:
    ctx = UIContext(server.url, cache_dir=tmp_path / "cache")
    form, handler = video_form(server)
    with Client(server.url) as api:
        image = tmp_path / "start.png"
        image.write_bytes(png_bytes((96, 64)))
        source = api.submit_video(image, sampling_mode="forward", seed=2, **QUICK)["job_id"]
        still = api.submit_image(input_image=image, prompt="x", steps=1, width=64, height=64)["job_id"]
        assert api.wait(source)["status"] == "completed" and api.wait(still)["status"] == "completed"

        # The button shows on a finished video job only.
        assert render_job(ctx, source)[-1]["visible"] is True
        assert render_job(ctx, still)[-1]["visible"] is False

        job_id_box, upload, start, end, section, tabs, error = fill_extension(ctx, source)
        assert job_id_box["value"] == source and section["open"] is True and tabs.selected == "video"
        assert upload["value"] is None and start["value"] is None and end["value"] is None
        assert error["visible"] is False

        # What it filled in is what the Video tab's button then sends.
        errors, job_id = press_submit(form, handler, extend_job_id=job_id_box["value"], image=start["value"],
                                      **QUICK)
        assert errors == {} and isinstance(job_id, str), errors
        status = api.wait(job_id)
        assert status["status"] == "completed" and status["params"]["extend_job_id"] == source, status

    # A stale button (an image job, a job gone) leaves the form alone and says why.
    for wrong, why in ((still, "only a completed video job"), ("no-such-job", "Job no-such-job")):
        out = fill_extension(ctx, wrong)
        assert out[:6] == [gr.skip()] * 6, out
        assert out[-1]["visible"] is True and why in out[-1]["value"], out[-1]
