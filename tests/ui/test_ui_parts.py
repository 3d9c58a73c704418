"""The page's parts without a browser: API errors mapped to fields, graceful 404s, the live feed."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("gradio")

import gradio as gr

from framepack_api.client import Client
from framepack_api.ui.context import UIContext
from framepack_api.ui.feed import JobFeed
from framepack_api.ui.forms import Form
from framepack_api.ui.params import field_errors, parse_lora_scales
from framepack_api.ui.submit import lora_choices, submit

from support.server import png_bytes


def mock_client(handler: Any) -> Client:
    return Client("http://api.test", transport=httpx.MockTransport(handler))


def context(handler: Any) -> UIContext:
    ctx = UIContext("http://api.test")
    ctx.api = mock_client(handler)
    ctx.feed = JobFeed(lambda: mock_client(handler))
    return ctx


def test_validation_errors_go_to_their_fields_and_the_rest_is_general() -> None:
    detail = [{"loc": ["body", "steps"], "msg": "Input should be less than or equal to 100"},
              {"loc": ["body", "end_image"], "msg": "an end image needs sampling_mode 'reverse'"},
              {"loc": ["body"], "msg": "lora_scales has 2 values for 1 lora_paths"}]
    errors, general = field_errors(422, detail, {"steps", "end_image", "prompt"})
    assert errors == {"steps": "Input should be less than or equal to 100",
                      "end_image": "an end image needs sampling_mode 'reverse'"}
    assert general is not None and "HTTP 422" in general and "lora_scales has 2 values" in general
    assert field_errors(409, "same key, different request", {"steps"}) == (
        {}, "The server refused the request (HTTP 409): same key, different request")


def test_lora_scales_must_match_the_selection() -> None:
    assert parse_lora_scales(["a.safetensors"], "") == (["a.safetensors"], [])
    assert parse_lora_scales(["a", "b"], "1, 0.5") == (["a", "b"], [1.0, 0.5])
    with pytest.raises(ValueError, match="2 scale"):
        parse_lora_scales(["a"], "1, 0.5")


def test_a_missing_image_endpoint_is_a_clear_message_not_a_crash() -> None:
    ctx = context(lambda request: httpx.Response(404, json={"detail": "Not Found"}))
    with gr.Blocks():
        form = Form("t")
        form.textbox("prompt", "Prompt")
        form.footer()
    out = submit(ctx, form, "POST /api/generate-image", lambda: ctx.api.submit_image(prompt="x"))
    *field_updates, general, notice, selected = out
    assert all(u["visible"] is False for u in field_updates)
    assert general["visible"] is True and "does not offer POST /api/generate-image (HTTP 404)" in general["value"]
    assert notice == ""
    assert isinstance(selected, type(gr.skip()))  # no job to select


def test_a_refused_field_is_shown_under_that_field() -> None:
    detail = [{"loc": ["body", "prompt"], "msg": "String should have at most 4000 characters"}]
    ctx = context(lambda request: httpx.Response(422, json={"detail": detail}))
    with gr.Blocks():
        form = Form("t")
        form.textbox("prompt", "Prompt")
        form.textbox("seed", "Seed")
        form.footer()
    prompt_error, seed_error, general, _notice, _selected = submit(
        ctx, form, "POST /generate", lambda: ctx.api.submit_video(png_bytes(), prompt="x" * 5000))
    assert prompt_error["visible"] is True and "at most 4000 characters" in prompt_error["value"]
    assert seed_error["visible"] is False and general["visible"] is False


def test_lora_picker_without_the_endpoint_says_so() -> None:
    missing = lora_choices(context(lambda request: httpx.Response(404, json={"detail": "Not Found"})))
    assert missing["interactive"] is False and "no GET /loras" in missing["info"]
    unset = lora_choices(context(lambda request: httpx.Response(
        200, json={"lora_dir_configured": False, "loras": []})))
    assert "no LORA_DIR" in unset["info"]
    listed = lora_choices(context(lambda request: httpx.Response(200, json={
        "lora_dir_configured": True, "loras": [{"name": "style/a.safetensors", "size_bytes": 1, "format": "peft"}]})))
    assert listed["choices"] == ["style/a.safetensors"] and listed["interactive"] is True


def test_feed_builds_rows_and_applies_progress_events() -> None:
    job = "11111111-2222-3333-4444-555555555555"

    def api(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/queue":
            return httpx.Response(200, json={"queue": [{"job_id": job, "type": "video", "status": "pending",
                                                        "position": 1, "progress": 0.0, "prompt": "p"}]})
        if request.url.path == f"/status/{job}":
            return httpx.Response(200, json={"job_id": job, "status": "pending", "progress": 0.0,
                                             "queue_position": 1, "eta_seconds": 42.0})
        if request.url.path == f"/thumbnail/{job}":
            import io

            from PIL import Image
            out = io.BytesIO()
            Image.new("RGB", (320, 240), (10, 200, 10)).save(out, format="JPEG")
            return httpx.Response(200, content=out.getvalue(), headers={"content-type": "image/jpeg"})
        return httpx.Response(404, json={"detail": "Not Found"})

    ctx = context(api)
    ctx.feed.refresh_now()
    (row,) = ctx.feed.rows()
    assert row["position"] == 1 and row["eta_seconds"] == 42.0
    assert row["thumbnail"].startswith("data:image/jpeg;base64,")
    version, job_version = ctx.feed.version, ctx.feed.job_version(job)

    ctx.feed._apply("progress", json.loads(json.dumps({"job_id": job, "status": "processing", "progress": 37.5,
                                                       "step": 3, "total_steps": 8})))
    (row,) = ctx.feed.rows()
    assert (row["status"], row["progress"], row["step"]) == ("processing", 37.5, 3)
    assert ctx.feed.version > version and ctx.feed.job_version(job) > job_version


def test_every_tab_carries_the_tiny_model_notice_shown_from_health(tmp_path: Path) -> None:
    from framepack_api.ui.app import build_ui, tiny_notice_updates

    for tiny in (True, False):
        def answer(request: httpx.Request, tiny: bool = tiny) -> httpx.Response:
            if request.url.path == "/health":
                return httpx.Response(200, json={"status": "ok", "tiny_model": tiny})
            return httpx.Response(404, json={"detail": "Not Found"})

        ctx = UIContext("http://api.test", cache_dir=tmp_path / "cache")
        ctx.api = mock_client(answer)
        blocks = build_ui(ctx)
        notices = [b for b in blocks.blocks.values() if isinstance(b, gr.HTML) and "fp-tiny" in (b.elem_classes or [])]
        tabs = {tab_of(n) for n in notices}
        assert len(notices) == 4 and tabs == {"Video", "Images", "Queue", "Job"}
        assert all("noise" in str(n.value) for n in notices)
        assert [u["visible"] for u in tiny_notice_updates(ctx, len(notices))] == [tiny] * 4


def tab_of(block: Any) -> str | None:
    parent = block.parent
    while parent is not None and not isinstance(parent, gr.Tab):
        parent = parent.parent
    return str(parent.label) if parent is not None else None


def test_starting_the_page_leaves_no_temporary_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi import FastAPI

    from framepack_api.settings import Settings
    from framepack_api.ui.app import mount_ui
    from framepack_api.ui.context import CACHE_MAX_AGE_SECONDS

    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # where every mkdtemp of this process goes
    settings = Settings(data_dir=tmp_path / "data", _env_file=None)  # type: ignore[call-arg]
    cache = settings.data_dir / "ui-cache"
    cache.mkdir(parents=True)
    (cache / "old-job").mkdir()
    (cache / "recent-job").mkdir()
    old = time.time() - CACHE_MAX_AGE_SECONDS - 60
    os.utime(cache / "old-job", (old, old))
    for _ in range(2):  # two starts
        assert mount_ui(FastAPI(), settings).cache_dir == cache
    assert list(temp.iterdir()) == []
    assert sorted(p.name for p in cache.iterdir()) == ["recent-job"]  # old downloads pruned at start
