"""The One image form's RoPE batch inputs: its real submit handler against a real server and worker,
then the job view's images and ZIP, and "Use these settings again" (no browser)."""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("gradio")

import gradio as gr

from framepack_api.client import Client
from framepack_api.ui.app import _form_values
from framepack_api.ui.context import UIContext
from framepack_api.ui.forms import Form
from framepack_api.ui.images_tab import build_images_tab
from framepack_api.ui.job_view import render_job

from support.server import Server, png_bytes
from support.ui_forms import press_submit

QUICK = {"prompt": "a red coat", "steps": 1, "width": 64, "height": 64, "seed": 3}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("ui-rope")).start()
    yield srv
    srv.stop()


def image_form(ctx: UIContext) -> tuple[Form, Callable[..., list[Any]]]:
    """The One image sub-tab as the page builds it, and its 'Add to queue' handler."""
    with gr.Blocks() as blocks:
        [one, _batch, _transfer], _pickers, _tabs = build_images_tab(ctx, gr.State())
    [handler] = [f.fn for f in blocks.fns.values() if f.fn is not None and f.fn.__name__ == "on_one"]
    return one, handler


def test_a_range_makes_one_image_per_index_shown_and_downloadable(server: Server, tmp_path: Path) -> None:
    ctx = UIContext(server.url, cache_dir=tmp_path / "cache")
    form, handler = image_form(ctx)
    image = tmp_path / "in.png"
    image.write_bytes(png_bytes((64, 64)))
    errors, job_id = press_submit(form, handler, input_image=str(image), rope_batch="range", rope_start=1,
                                  rope_end=5, rope_step=2, rope_batch_size=2, **QUICK)
    assert errors == {} and isinstance(job_id, str), errors
    with Client(server.url) as api:
        status = api.wait(job_id)
    assert status["status"] == "completed", status
    assert [item["target_index"] for item in status["batch_progress"]["items"]] == [1, 3, 5]
    assert status["params"]["rope_batch_size"] == 2

    view = render_job(ctx, job_id)  # header, progress, preview, video, gallery, download, ...
    gallery, download = view[4], view[5]
    assert gallery["visible"] and len(gallery["value"]) == 3
    with zipfile.ZipFile(download["value"]) as archive:
        assert sorted(n for n in archive.namelist() if n.endswith(".png")) == [
            "image_000.png", "image_001.png", "image_002.png"]

    # "Use these settings again" puts the range back into the RoPE fields.
    values = _form_values("image", status["params"])
    assert {k: values[k] for k in ("rope_batch", "rope_start", "rope_end", "rope_step")} == {
        "rope_batch": "range", "rope_start": 1, "rope_end": 5, "rope_step": 2}
    refill = form.fill(values)
    assert refill[form.names.index("rope_batch")]["value"] == "range"


def test_a_list_is_sent_as_indices_and_errors_show_under_their_field(server: Server, tmp_path: Path) -> None:
    ctx = UIContext(server.url, cache_dir=tmp_path / "cache")
    form, handler = image_form(ctx)
    errors, job_id = press_submit(form, handler, rope_batch="indices", rope_indices="9, 2", **QUICK)
    assert errors == {} and isinstance(job_id, str), errors
    with Client(server.url) as api:
        status = api.wait(job_id)
    assert status["status"] == "completed", status
    assert status["params"]["rope_batch"]["indices"] == [9, 2]
    assert [item["target_index"] for item in status["batch_progress"]["items"]] == [2, 9]

    refusals = [
        ({"rope_batch": "indices", "rope_indices": "1, x"}, "rope_indices"),
        ({"rope_batch": "indices", "rope_indices": "3, 3"}, "rope_indices"),
        ({"rope_batch": "count", "rope_start": 60, "rope_count": 10}, "rope_count"),
        ({"rope_batch": "range", "rope_start": 9, "rope_end": 2}, "rope_end"),
        ({"rope_batch": "range", "rope_end": 4}, "rope_batch"),  # no start: the object as a whole
        ({"rope_batch": "range", "rope_start": 1, "rope_end": 4, "rope_step": 0}, "rope_step"),
        ({"rope_batch": "count", "rope_start": 1, "rope_count": 2, "target_index": 4}, "target_index"),
    ]
    for fields, where in refusals:
        errors, job_id = press_submit(form, handler, **{**QUICK, **fields})
        assert set(errors) == {where}, (fields, errors)
        assert not isinstance(job_id, str)  # refused before any request
