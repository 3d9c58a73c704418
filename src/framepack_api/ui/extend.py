"""The Video tab's extension inputs: continue a finished job's video, or an uploaded MP4.

Extension samples forward (F1), so the form's sampling choice is not sent; the length slider is
the time added, and an empty resolution keeps the input video's own size (docs/API.md#video-extension).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from framepack_api.ui.context import UIContext
from framepack_api.ui.forms import Form
from framepack_api.ui.submit import submit

EXTENSION_FIELDS = ("extend_job_id", "video", "extension_output")


def build_extension_inputs(form: Form) -> None:
    with gr.Accordion("Extend a finished video", open=False, elem_id="vid-extend"):
        gr.Markdown("Continue a video by *Total video length* seconds with forward (F1) sampling, from the "
                    "video's end. Give a job id **or** an MP4; the start image is then not used.")
        form.textbox("extend_job_id", "Job id of a finished video", placeholder="e.g. 3f2c6a53-…",
                     info="One of your completed video jobs (the Queue tab lists them).")
        form.add("video", gr.File(label="…or upload an MP4", file_types=[".mp4", ".webm", ".mov"], type="filepath",
                                  elem_id="vid-video"))
        form.add("extension_output", gr.Radio(["whole", "new"], value="whole", label="Result",
                                              info="whole = the input followed by the new part; new = the new "
                                                   "part only.", elem_id="vid-extension_output"))


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
