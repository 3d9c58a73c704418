"""The video form's schedule and keyframe parts: the live preview (the server's own parse), the
keyframe inputs, and a submit with keyframes through the real client to the real app."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("gradio")

import gradio as gr

from framepack_api.client import Client
from framepack_api.ui.app import _form_values, build_ui
from framepack_api.ui.context import UIContext
from framepack_api.ui.schedule import parse_times, schedule_preview

from support.server import Server, png_bytes


def test_preview_shows_the_sections_of_each_prompt_and_keyframe() -> None:
    # window 2: sections of 0.267 s; 1.2 s is 4 sections starting at 0, 0.267, 0.533, 0.8 s.
    html = schedule_preview("[0s] a girl stands [0.5s] she waves", 1.2, 2, "0.5")
    assert "of 4" in html
    assert "[0s] a girl stands → section(s) 1, 2" in html and "[0.5s] she waves → section(s) 3, 4" in html
    assert "keyframe at 0.5s → end of section 2 (0.5333s)" in html
    assert "One prompt for all 5 section(s)" in schedule_preview("a cat", 5, 8)


@pytest.mark.parametrize(("args", "message"), [
    (("[0s] a [2s] b [1s] c", 5, 9), "prompt: Value error, prompt schedule: times must increase"),
    (("[0s] a [6s] b", 5, 9), "prompt: prompt schedule: time 6s is not before the end of the video (5s)"),
    (("a", 5, 9, "9"), "keyframe_times: time 9s is outside the video"),
    (("a", 5, 9, "2, soon"), "keyframe times: &#x27;soon&#x27; is not a time in seconds"),
    (("a", 5, 9, "2", "forward"), "keyframes need sampling_mode &#x27;reverse&#x27;"),
    (("a", 5, 9, "5", "reverse", True), "as the end image does"),
])
def test_preview_shows_the_servers_refusal(args: tuple[Any, ...], message: str) -> None:
    html = schedule_preview(*args)
    assert 'class="fp-error"' in html and message in html, html


def test_times_as_typed() -> None:
    assert parse_times("1.5, 3s 4") == [1.5, 3.0, 4.0]
    assert parse_times("") == [] and parse_times(None) == []


def video_submit(blocks: gr.Blocks) -> Any:
    [fn] = [f for f in blocks.fns.values() if getattr(f.fn, "__name__", "") == "on_submit"
            and any(getattr(c, "elem_id", None) == "vid-keyframe_images" for c in f.inputs)]
    return fn


def test_the_form_submits_keyframes_and_reuse_keeps_their_times(tmp_path: Path) -> None:
    images = []
    for name, colour in (("start", (200, 40, 40)), ("k1", (0, 250, 0)), ("k2", (250, 250, 0))):
        (tmp_path / f"{name}.png").write_bytes(png_bytes(color=colour))
        images.append(str(tmp_path / f"{name}.png"))
    server = Server(tmp_path / "data", workers=0).start()  # the real API on loopback; the job stays pending
    try:
        ctx = UIContext(server.url, cache_dir=tmp_path / "cache")
        ctx.api = Client(server.url)
        http = server.client()
        fn = video_submit(build_ui(ctx))
        values = {c.elem_id.removeprefix("vid-"): c.value for c in fn.inputs}
        values.update(image=images[0], keyframe_images=images[1:], keyframe_times="2.4, 1", prompt="a cat",
                      resolution=64, video_length=5)
        out = fn.fn(*[values[c.elem_id.removeprefix("vid-")] for c in fn.inputs])
        job_id = out[-1]
        assert isinstance(job_id, str), out
        status = http.get(f"/status/{job_id}").json()
        assert status["keyframes"] == [{"time": 1.0, "section": 1, "pinned_at": 1.2},
                                       {"time": 2.4, "section": 2, "pinned_at": 2.4}]
        assert _form_values("video", status["params"])["keyframe_times"] == "2.4, 1"

        # A mismatch is refused in the form, under the images, before any request.
        values.update(keyframe_times="2.4")
        out = fn.fn(*[values[c.elem_id.removeprefix("vid-")] for c in fn.inputs])
        errors = {c.elem_id: u for c, u in zip(fn.outputs, out, strict=False) if isinstance(u, dict)}
        assert "2 image(s) for 1 time(s)" in errors["vid-err-keyframe_images"]["value"]
    finally:
        server.stop()
