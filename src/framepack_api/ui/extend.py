"""The Video tab's extension inputs: continue a finished job's video, or an uploaded MP4.

Extension samples forward (F1), so the form's sampling choice is not sent; the length slider is
the time added, and an empty resolution keeps the input video's own size (docs/API.md#video-extension).
"""

from __future__ import annotations

from typing import Any

import gradio as gr
import httpx

from framepack_api.client import APIError
from framepack_api.ui.context import UIContext
from framepack_api.ui.forms import Form
from framepack_api.ui.job_view import is_extendable
from framepack_api.ui.params import error_html
from framepack_api.ui.submit import submit

EXTENSION_FIELDS = ("extend_job_id", "video", "extension_output")


def build_extension_inputs(form: Form) -> gr.Accordion:
    with gr.Accordion("Extend a finished video", open=False, elem_id="vid-extend") as section:
        gr.Markdown("Continue a video by *Total video length* seconds with forward (F1) sampling, from the "
                    "video's end. Give a job id **or** an MP4; the start image is then not used.")
        form.textbox("extend_job_id", "Job id of a finished video", placeholder="e.g. 3f2c6a53-…",
                     info="One of your completed video jobs (the Queue tab lists them).")
        form.add("video", gr.File(label="…or upload an MP4", file_types=[".mp4", ".webm", ".mov"], type="filepath",
                                  elem_id="vid-video"))
        form.add("extension_output", gr.Radio(["whole", "new"], value="whole", label="Result",
                                              info="whole = the input followed by the new part; new = the new "
                                                   "part only.", elem_id="vid-extension_output"))
    return section


def is_extension(values: dict[str, Any]) -> bool:
    return bool((values.get("extend_job_id") or "").strip()) or bool(values.get("video"))


def submit_extension(ctx: UIContext, form: Form, values: dict[str, Any]) -> list[Any]:
    """Queue an extension job from the form's values (start and end image already taken out)."""
    video = values.pop("video") or None
    job_id = (values.pop("extend_job_id") or "").strip() or None
    values.pop("sampling_mode", None)  # always forward; the server's default for an extension
    params = {k: v for k, v in values.items() if v is not None and v != "" and v != []}
    return submit(ctx, form, "POST /generate",
                  lambda: ctx.api.extend_video(video, extend_job_id=job_id, **params))


def extend_outputs(form: Form, section: gr.Accordion) -> list[Any]:
    """What ``fill_extension`` updates, in its order (the page adds the Video tab and the job view's error)."""
    return [form.fields["extend_job_id"], form.fields["video"], form.fields["image"], form.fields["end_image"],
            section]


def fill_extension(ctx: UIContext, job_id: str | None) -> list[Any]:
    """The job view's "Extend this video": put the job's id into the Video tab's extension section.

    Returns updates for ``extend_outputs``, then the page's tabs and the job view's error slot. An
    upload or start image left in the form would make the submit ambiguous (the form refuses an image
    with an extension), so they are cleared. The job is re-read: the button may be stale.
    """
    skip_all = [gr.skip()] * 6
    if not job_id:
        return [*skip_all, gr.skip()]
    try:
        status = ctx.api.status(job_id)
    except (APIError, httpx.HTTPError) as exc:
        message = exc.detail if isinstance(exc, APIError) else f"cannot reach {ctx.server_url}: {exc}"
        return [*skip_all, gr.update(value=error_html(f"Job {job_id}: {message}"), visible=True)]
    if not is_extendable(status):
        why = f"only a completed video job can be extended (this is a {status.get('status')} {status.get('type')} job)"
        return [*skip_all, gr.update(value=error_html(why), visible=True)]
    return [gr.update(value=job_id), gr.update(value=None), gr.update(value=None), gr.update(value=None),
            gr.update(open=True), gr.Tabs(selected="video"), gr.update(value="", visible=False)]
