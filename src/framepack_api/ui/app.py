"""The FramePack page: a Gradio client of the HTTP API, mounted at /ui or run alone.

    framepack-api ui --server http://gpu-box:8000       # alone, against any server
    framepack-api serve                                  # mounted at http://127.0.0.1:8000/ui

Live updates: one JobFeed per process follows the server's event stream (see feed.py); a 0.5 s
gr.Timer in each browser session compares version numbers with the feed and sends the browser
only what changed (gr.skip() otherwise), so an idle page costs nothing but the timer's ping.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
from fastapi import FastAPI

from framepack_api.settings import Settings
from framepack_api.ui.context import UIContext
from framepack_api.ui.extend import extend_outputs, fill_extension
from framepack_api.ui.forms import Form
from framepack_api.ui.images_tab import build_images_tab
from framepack_api.ui.job_view import build_job_view, render_job
from framepack_api.ui.queue_tab import build_queue_tab, cancel_job, queue_html, queue_summary
from framepack_api.ui.rope_inputs import rope_form_values
from framepack_api.ui.submit import lora_choices
from framepack_api.ui.video_tab import build_video_tab

TICK_SECONDS = 0.5
SERVER_SET = ("has_end_image", "has_input_image", "has_source_mask", "has_target_mask", "has_input_video",
              "remixed_from")

CSS = """
.fp-field-error, .fp-form-error { margin-top: -6px; }
.fp-error { color: #b91c1c; background: #fef2f2; border: 1px solid #fecaca; border-radius: 6px;
            padding: 4px 8px; font-size: 0.9em; }
.fp-notice { color: #065f46; background: #ecfdf5; border: 1px solid #a7f3d0; border-radius: 6px; padding: 6px 10px; }
.fp-job { display: flex; gap: 12px; align-items: center; }
.fp-thumb { width: 96px; height: 72px; object-fit: cover; border-radius: 6px; flex: none; }
.fp-nothumb { display: flex; align-items: center; justify-content: center; background: #e5e7eb; color: #6b7280;
              font-size: 0.8em; }
.fp-info { flex: 1; min-width: 0; }
.fp-prompt { color: #4b5563; font-size: 0.9em; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.fp-where { color: #374151; font-size: 0.9em; }
.fp-id { font-size: 0.8em; color: #6b7280; }
.fp-status { border-radius: 999px; padding: 1px 8px; font-size: 0.8em; background: #e5e7eb; }
.fp-status-processing { background: #dbeafe; color: #1e40af; }
.fp-status-completed { background: #dcfce7; color: #166534; }
.fp-status-failed { background: #fee2e2; color: #991b1b; }
.fp-status-cancelled { background: #f3f4f6; color: #6b7280; }
.fp-progress { position: relative; height: 18px; background: #e5e7eb; border-radius: 9px; overflow: hidden;
               margin-top: 4px; }
.fp-progress-fill { height: 100%; background: #3b82f6; transition: width 0.3s; }
.fp-progress-text { position: absolute; inset: 0; text-align: center; font-size: 0.75em; line-height: 18px; }
.fp-preview img { max-width: 100%; image-rendering: pixelated; min-width: 256px; border-radius: 6px; }
.fp-row { display: flex; gap: 12px; align-items: center; border-bottom: 1px solid #e5e7eb; padding: 6px 0; }
.fp-row .fp-job { flex: 1; min-width: 0; }
.fp-actions { display: flex; flex-direction: column; gap: 6px; width: 96px; }
.fp-btn { border-radius: 6px; padding: 4px 10px; border: 1px solid #d1d5db; background: #f3f4f6; cursor: pointer; }
.fp-btn.fp-cancel { background: #ef4444; border-color: #dc2626; color: white; }
.fp-empty { color: #6b7280; padding: 12px; }
.fp-warn { color: #92400e; }
.fp-tiny { color: #92400e; background: #fffbeb; border: 1px solid #fcd34d; border-radius: 6px; padding: 6px 10px; }
"""
TINY_NOTICE = ('<div class="fp-tiny-text"><b>Tiny model:</b> this server runs the tiny FramePack model with '
               "random weights (no GPU), so every output is noise. It shows that the whole path works; for real "
               "videos and images run the server on a GPU machine with <code>FRAMEPACK_API_MODEL=framepack</code>."
               "</div>")


def _form_values(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """A job's recorded params in the shape the forms hold (lists become text)."""
    values = {k: v for k, v in params.items() if k not in SERVER_SET}
    if values.get("lora_scales"):
        values["lora_scales"] = ", ".join(str(s) for s in values["lora_scales"])
    if "keyframe_times" in values:  # the images are not re-uploaded: the times are kept as a reminder
        values["keyframe_times"] = ", ".join(f"{t:g}" for t in values["keyframe_times"] or [])
    if kind == "image":
        values.update(rope_form_values(values))
    if kind == "image_batch":
        values["prompts"] = "\n".join(values.get("prompts") or [])
        values["seeds"] = ", ".join(str(s) for s in values.get("seeds") or [])
    return values


def build_ui(ctx: UIContext) -> gr.Blocks:
    with gr.Blocks(title="FramePack", analytics_enabled=False) as blocks:
        selected = gr.State(None)  # the job the Job tab shows
        queue_seen = gr.State(-1)
        job_seen = gr.State(-1)
        gr.HTML(f'<h2 style="margin:0">FramePack</h2><div class="fp-where">server: <code>{ctx.server_url}</code>'
                "</div>", elem_id="fp-title")
        notices: list[gr.HTML] = []  # one per tab, shown on page load when the server's model is tiny

        def tiny_notice() -> None:
            notices.append(gr.HTML(TINY_NOTICE, visible=False, elem_classes=["fp-tiny"]))

        with gr.Tabs(elem_id="fp-tabs") as tabs:
            with gr.Tab("Video", id="video"):
                tiny_notice()
                video_form, video_loras, video_refresh, extension = build_video_tab(ctx, selected)
            with gr.Tab("Images", id="images"):
                tiny_notice()
                image_forms, image_pickers, image_tabs = build_images_tab(ctx, selected)
            with gr.Tab("Queue", id="queue"):
                tiny_notice()
                summary, rows = build_queue_tab(ctx, selected, tabs)
            with gr.Tab("Job", id="job"):
                tiny_notice()
                view = build_job_view()
        timer = gr.Timer(TICK_SECONDS)

        def tick(seen: int, job_id: str | None, job_version: int) -> list[Any]:
            ctx.feed.ensure_started()
            version = ctx.feed.version
            if version != seen:
                jobs = ctx.feed.rows()
                queue_out: list[Any] = [queue_html(jobs), version, queue_summary(jobs, ctx)]
            else:
                queue_out = [gr.skip(), gr.skip(), gr.skip()]
            current = ctx.feed.job_version(job_id) if job_id else -1
            if job_id and current != job_version:
                return [*queue_out, current, *render_job(ctx, job_id)]
            return [*queue_out, gr.skip(), *[gr.skip()] * len(view.outputs)]

        timer.tick(tick, [queue_seen, selected, job_seen], [rows, queue_seen, summary, job_seen, *view.outputs],
                   show_progress="hidden", concurrency_limit=None)

        def show_job(job_id: str | None) -> list[Any]:
            return [ctx.feed.job_version(job_id) if job_id else -1, *render_job(ctx, job_id)]

        selected.change(show_job, [selected], [job_seen, *view.outputs], show_progress="hidden",
                        concurrency_limit=None)
        view.cancel.click(lambda job_id: gr.update(value=cancel_job(ctx, job_id), visible=True), [selected],
                          [view.error], concurrency_limit=None)

        forms: list[tuple[str, Form]] = [("video", video_form), ("image", image_forms[0]),
                                         ("image_batch", image_forms[1]), ("image_transfer", image_forms[2])]
        subtab_ids = {"image": "img-one", "image_batch": "img-batch", "image_transfer": "img-transfer"}

        def reuse(job_id: str | None) -> list[Any]:
            status = ctx.api.status(job_id) if job_id else {}
            kind = status.get("type", "")
            values = _form_values(kind, status.get("params", {}))
            out: list[Any] = []
            for form_kind, form in forms:
                out += form.fill(values) if form_kind == kind else [gr.skip()] * len(form.fields)
            target = "video" if kind == "video" else "images" if kind in subtab_ids else None
            out.append(gr.Tabs(selected=target) if target else gr.skip())
            out.append(gr.Tabs(selected=subtab_ids[kind]) if kind in subtab_ids else gr.skip())
            return out

        view.extend.click(lambda job_id: fill_extension(ctx, job_id), [selected],
                          [*extend_outputs(video_form, extension), tabs, view.error], concurrency_limit=None)
        view.reuse.click(reuse, [selected], [*(c for _, f in forms for c in f.inputs), tabs, image_tabs])

        pickers = [(video_loras, video_refresh), *image_pickers]
        for dropdown, refresh in pickers:
            refresh.click(lambda: lora_choices(ctx), None, [dropdown], show_progress="hidden")

        def on_load() -> list[Any]:
            ctx.feed.ensure_started()
            choices = lora_choices(ctx)
            return [*[choices] * len(pickers), *tiny_notice_updates(ctx, len(notices))]

        blocks.load(on_load, None, [*(d for d, _ in pickers), *notices], show_progress="hidden")
    return blocks


def tiny_notice_updates(ctx: UIContext, count: int) -> list[Any]:
    """Show or hide the tiny-model notice of every tab, as the server's /health says now."""
    return [gr.update(visible=ctx.server_is_tiny())] * count


def server_base_url(settings: Settings) -> str:
    """How the mounted page reaches its own server: the bound address, with wildcards as loopback."""
    host = settings.host
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def mount_ui(app: FastAPI, settings: Settings, path: str = "/ui") -> UIContext:
    ctx = UIContext(server_base_url(settings), api_key=settings.api_keys[0] if settings.api_keys else None,
                    cache_dir=settings.data_dir / "ui-cache")
    gr.mount_gradio_app(app, build_ui(ctx), path=path, css=CSS, allowed_paths=[str(ctx.cache_dir)],
                        ssr_mode=False, footer_links=["gradio"])
    return ctx


def run_ui(server: str, *, host: str = "127.0.0.1", port: int = 7860, api_key: str | None = None) -> None:
    """`framepack-api ui`: serve the page alone, as a client of `server`."""
    ctx = UIContext(server, api_key=api_key)
    build_ui(ctx).launch(server_name=host, server_port=port, css=CSS, allowed_paths=[str(ctx.cache_dir)],
                         ssr_mode=False, footer_links=["gradio"], show_error=False)
