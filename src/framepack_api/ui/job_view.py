"""The job view: live latent preview and progress while running; the video (or images), a download
and the parameters used once done; cancel, "use these settings again", and "extend this video" on a
finished video job."""

from __future__ import annotations

import base64
import html
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import httpx

from framepack_api.client import APIError
from framepack_api.ui.context import UIContext
from framepack_api.ui.html import job_header, progress_bar
from framepack_api.ui.params import error_html

log = logging.getLogger(__name__)

IMAGE_TYPES = ("image", "image_batch", "image_transfer")
EMPTY = '<div class="fp-empty">No job selected: submit one, or press <b>Open</b> on a job in the Queue tab.</div>'


@dataclass
class JobView:
    header: gr.HTML
    progress: gr.HTML
    preview: gr.HTML
    video: gr.Video
    gallery: gr.Gallery
    download: gr.DownloadButton
    params: gr.JSON
    cancel: gr.Button
    reuse: gr.Button
    error: gr.HTML
    extend: gr.Button

    @property
    def outputs(self) -> list[Any]:
        return [self.header, self.progress, self.preview, self.video, self.gallery, self.download,
                self.params, self.cancel, self.reuse, self.error, self.extend]


def build_job_view() -> JobView:
    header = gr.HTML(EMPTY, elem_id="job-header")
    progress = gr.HTML("", elem_id="job-progress")
    error = gr.HTML("", visible=False, elem_id="job-error")
    with gr.Row():
        cancel = gr.Button("Cancel this job", variant="stop", visible=False, elem_id="job-cancel")
        reuse = gr.Button("Use these settings again", visible=False, elem_id="job-reuse")
        extend = gr.Button("Extend this video", visible=False, elem_id="job-extend")
    with gr.Row():
        with gr.Column():
            preview = gr.HTML("", visible=False, elem_id="job-preview")
            video = gr.Video(label="Result", visible=False, interactive=False, elem_id="job-video")
            gallery = gr.Gallery(label="Result", visible=False, interactive=False, elem_id="job-gallery",
                                 columns=4, height="auto")
            download = gr.DownloadButton("Download", visible=False, elem_id="job-download")
        with gr.Column():
            params = gr.JSON(label="Parameters used", visible=False, elem_id="job-params")
    return JobView(header, progress, preview, video, gallery, download, params, cancel, reuse, error, extend)


def render_job(ctx: UIContext, job_id: str | None) -> list[Any]:
    """Updates for every JobView output, from the job's current status."""
    hidden = gr.update(visible=False)
    if not job_id:
        return [EMPTY, "", hidden, hidden, hidden, hidden, hidden, hidden, hidden, hidden, hidden]
    try:
        status = ctx.api.status(job_id)
    except (APIError, httpx.HTTPError) as exc:
        message = exc.detail if isinstance(exc, APIError) else f"cannot reach {ctx.server_url}: {exc}"
        return [gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(),
                gr.skip(), gr.update(value=error_html(f"Job {job_id}: {message}"), visible=True), gr.skip()]
    state = status["status"]
    running = state in ("pending", "processing")
    percent = 100.0 if state == "completed" else float(status.get("progress") or 0.0)
    progress = progress_bar(percent, f"{percent:.0f}%  {state}")
    preview = hidden
    if state == "processing" and status.get("preview_url"):
        preview = gr.update(value=_preview_html(ctx, job_id), visible=True)
    video = gallery = download = hidden
    error = hidden
    if state == "failed":
        error = gr.update(value=error_html(f"Failed: {status.get('error') or 'no reason given'}"), visible=True)
    if state == "completed":
        try:
            files = _result_files(ctx, status)
        except (APIError, httpx.HTTPError, OSError, zipfile.BadZipFile) as exc:
            files = None
            error = gr.update(value=error_html(f"Finished, but the result could not be fetched: {exc}"),
                              visible=True)
        if files is not None:
            main, images = files
            if status["type"] in IMAGE_TYPES:
                gallery = gr.update(value=[str(p) for p in images], visible=True)
            else:
                video = gr.update(value=str(main), visible=True)
            download = gr.update(value=str(main), visible=True, label=f"Download {main.suffix[1:].upper()}")
    params = dict(status.get("params", {}))
    if status.get("seed") is not None:
        params["seed_used"] = status["seed"]
    return [job_header(status), progress, preview, video, gallery, download,
            gr.update(value=params, visible=True), gr.update(visible=running),
            gr.update(visible=bool(status.get("params"))), error,
            gr.update(visible=is_extendable(status))]


def is_extendable(status: dict[str, Any]) -> bool:
    """Only a completed video job has a video to continue (POST /generate's extend_job_id)."""
    return status.get("type") == "video" and status.get("status") == "completed"


def _preview_html(ctx: UIContext, job_id: str) -> str:
    try:
        jpeg = ctx.api.preview(job_id)
    except (APIError, httpx.HTTPError):
        return ""
    data = base64.b64encode(jpeg).decode("ascii")
    return (f'<div class="fp-preview"><div class="fp-caption">Latent preview (updates every step)</div>'
            f'<img alt="latent preview of {html.escape(job_id)}" src="data:image/jpeg;base64,{data}"></div>')


def _result_files(ctx: UIContext, status: dict[str, Any]) -> tuple[Path, list[Path]]:
    """Download a finished job's result once per UI process: (the file to download, images to show)."""
    job_id, kind = status["job_id"], status["type"]
    folder = ctx.cache_dir / job_id
    folder.mkdir(parents=True, exist_ok=True)
    # A RoPE batch is an "image" job whose result is a ZIP of one image per target index, like a batch.
    if kind == "image_batch" or (kind == "image" and (status.get("params") or {}).get("rope_batch")):
        main = folder / f"{job_id}.zip"
        if not main.exists():
            ctx.api.download(job_id, main)
        images = sorted(folder.glob("*.png"))
        if not images:
            with zipfile.ZipFile(main) as archive:
                for name in sorted(n for n in archive.namelist() if n.lower().endswith(".png")):
                    target = folder / Path(name).name  # flattened: names inside the zip are not trusted
                    target.write_bytes(archive.read(name))
            images = sorted(folder.glob("*.png"))
        return main, images
    main = folder / (f"{job_id}.png" if kind in IMAGE_TYPES else f"{job_id}.mp4")
    if not main.exists():
        ctx.api.download(job_id, main)
    return main, [main]
