"""The Queue tab: every job as a row (thumbnail, type, status, progress, position, ETA) with Open and
Cancel buttons.

The whole list is one gr.HTML whose value the live tick replaces (see app.py). Its buttons are plain
HTML; one listener on the component's root element (which survives re-renders) turns a press into
a `select` event carrying the action and the job id. Per-row Gradio buttons (@gr.render) were tried
first: re-rendering them on every progress update could swallow a click that landed mid-render.
"""

from __future__ import annotations

import html
from typing import Any

import gradio as gr
import httpx

from framepack_api.client import APIError
from framepack_api.ui.context import UIContext
from framepack_api.ui.html import job_card
from framepack_api.ui.params import error_html

ACTIVE = ("pending", "processing")
EMPTY = '<div class="fp-empty" id="queue-empty">The queue is empty.</div>'

# Mouse presses act on pointerdown, so a row re-rendered between press and release still counts;
# keyboard activation (Enter/Space) arrives as a click with detail 0.
QUEUE_JS = """
const act = (event) => {
  const button = event.target.closest('button[data-action]');
  if (!button || !element.contains(button)) return;
  event.preventDefault();
  trigger('select', {index: button.dataset.action, value: button.dataset.jobId});
};
element.addEventListener('pointerdown', (event) => { if (event.button === 0) act(event); });
element.addEventListener('click', (event) => { if (event.detail === 0) act(event); });
"""


def queue_html(jobs: list[dict[str, Any]]) -> str:
    if not jobs:
        return EMPTY
    rows = []
    for job in jobs:
        job_id = html.escape(job["job_id"])
        cancel = (f'<button class="fp-btn fp-cancel" data-action="cancel" data-job-id="{job_id}">Cancel</button>'
                  if job["status"] in ACTIVE else "")
        rows.append(f'<div class="fp-row">{job_card(job)}<div class="fp-actions">'
                    f'<button class="fp-btn fp-open" data-action="open" data-job-id="{job_id}">Open</button>'
                    f"{cancel}</div></div>")
    return "".join(rows)


def cancel_job(ctx: UIContext, job_id: str) -> str:
    """Cancel and say what happened; errors are shown in the tab, never raised into Gradio."""
    try:
        status = ctx.api.cancel(job_id)
    except APIError as exc:
        return error_html(f"Could not cancel {job_id[:8]}: {exc.detail}")
    except httpx.HTTPError as exc:
        return error_html(f"Cannot reach the server at {ctx.server_url}: {exc}")
    ctx.feed.mark_dirty()
    if status["status"] == "cancelled":
        return f'<div class="fp-notice">Cancelled job <code>{html.escape(job_id[:8])}</code>.</div>'
    return (f'<div class="fp-notice">Cancelling job <code>{html.escape(job_id[:8])}</code>: it stops at its '
            "next sampling step.</div>")


def build_queue_tab(ctx: UIContext, selected: gr.State, tabs: gr.Tabs) -> tuple[gr.HTML, gr.HTML]:
    summary = gr.HTML("", elem_id="queue-summary")
    notice = gr.HTML("", elem_id="queue-notice")
    rows = gr.HTML(EMPTY, elem_id="queue-rows", js_on_load=QUEUE_JS)

    def on_action(evt: gr.SelectData) -> tuple[Any, Any, Any]:
        action, job_id = str(evt.index), str(evt.value)
        if action == "open":
            return job_id, gr.Tabs(selected="job"), gr.skip()
        if action == "cancel":
            return gr.skip(), gr.skip(), cancel_job(ctx, job_id)
        return gr.skip(), gr.skip(), gr.skip()

    rows.select(on_action, None, [selected, tabs, notice], show_progress="hidden", concurrency_limit=None)
    return summary, rows


def queue_summary(jobs: list[dict[str, Any]], ctx: UIContext) -> str:
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job["status"]] = counts.get(job["status"], 0) + 1
    parts = [f"{counts[s]} {s}" for s in ("processing", "pending", "completed", "failed", "cancelled")
             if counts.get(s)]
    live = "live (event stream)" if ctx.feed.stream_connected else "polling (event stream unavailable)"
    problem = f' <span class="fp-warn">{html.escape(ctx.feed.last_error)}</span>' if ctx.feed.last_error else ""
    return f'<div class="fp-summary">{", ".join(parts) or "no jobs"} · updates: {live}{problem}</div>'
