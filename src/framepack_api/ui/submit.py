"""Submitting a form: the client call, its errors put next to their fields, the queued notice."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import gradio as gr
import httpx

from framepack_api.client import APIError
from framepack_api.ui.context import UIContext
from framepack_api.ui.forms import Form
from framepack_api.ui.params import field_errors


def submit(ctx: UIContext, form: Form, endpoint: str, call: Callable[[], dict[str, Any]]) -> list[Any]:
    """Run `call` (a client submit); return the form's feedback updates, then the selected job id."""
    try:
        job = call()
    except APIError as exc:
        if exc.status_code == 404 and not isinstance(exc.detail, list):
            missing = (f"This server does not offer {endpoint} (HTTP 404). It may be an older version "
                       "without this job type.")
            return [*form.feedback(general=missing), gr.skip()]
        errors, general = field_errors(exc.status_code, exc.detail, set(form.names))
        return [*form.feedback(errors, general), gr.skip()]
    except httpx.HTTPError as exc:
        return [*form.feedback(general=f"Cannot reach the server at {ctx.server_url}: {exc}"), gr.skip()]
    job_id = str(job["job_id"])
    position = None
    try:
        # Re-read the queue now rather than on the next event, so the job is listed at once.
        ctx.feed.refresh_now()
        position = next((r.get("position") for r in ctx.feed.rows() if r["job_id"] == job_id), None)
    except (APIError, httpx.HTTPError):
        pass
    where = f", #{position} in the queue" if position else ""
    notice = (f'<div class="fp-notice">Queued job <code>{html.escape(job_id)}</code>{where}. '
              "It is listed in the <b>Queue</b> tab; the <b>Job</b> tab follows it live.</div>")
    return [*form.feedback(notice=notice), job_id]


def refused(form: Form, errors: dict[str, str]) -> list[Any]:
    """Checks done before calling the API (a missing image, unreadable scales)."""
    return [*form.feedback(errors), gr.skip()]


def lora_picker(form: Form, prefix: str) -> tuple[gr.Dropdown, gr.Button]:
    """LoRA names from GET /loras (filled on page load) and their scales."""
    with gr.Row(equal_height=True):
        with gr.Column(scale=3):  # the error slot goes under the picker, not beside it
            names = form.add("lora_paths", gr.Dropdown(
                choices=[], value=[], multiselect=True, label="LoRA", info="Files in the server's LORA_DIR.",
                elem_id=f"{prefix}-lora_paths"))
        refresh = gr.Button("↻ LoRA list", size="sm", scale=0, min_width=90, elem_id=f"{prefix}-lora-refresh")
    form.textbox("lora_scales", "LoRA scales", placeholder="1.0 each; or e.g. 1.0, 0.6",
                 info="One per selected LoRA, comma-separated; empty = 1.0 each.")
    return names, refresh


def lora_choices(ctx: UIContext) -> Any:
    """Dropdown update: the server's LoRA files, or why there are none."""
    try:
        body = ctx.api.loras()
    except APIError as exc:
        why = "this server has no GET /loras" if exc.status_code == 404 else f"GET /loras: {exc.detail}"
        return gr.update(choices=[], info=f"No LoRA list: {why}.", interactive=False)
    except httpx.HTTPError as exc:
        return gr.update(choices=[], info=f"No LoRA list: cannot reach the server ({exc}).", interactive=False)
    names = [item["name"] if isinstance(item, dict) else str(item) for item in body.get("loras", [])]
    if not names:
        why = ("the server has no LORA_DIR set" if body.get("lora_dir_configured") is False
               else "LORA_DIR holds no .safetensors files")
        return gr.update(choices=[], info=f"No LoRAs: {why}.", interactive=False)
    return gr.update(choices=names, info=f"{len(names)} file(s) in the server's LORA_DIR.", interactive=True)
