"""Small HTML fragments of the page (queue rows, progress bars, the job header); no gradio here."""

from __future__ import annotations

import html
from typing import Any

from framepack_api.ui.params import format_eta

TYPE_LABELS = {"video": "Video", "image": "Image", "image_batch": "Image batch",
               "image_transfer": "Transfer (kisekaeichi)", "remote_video": "Remote video"}


def progress_bar(percent: float | None, label: str = "") -> str:
    value = max(0.0, min(100.0, float(percent or 0.0)))
    text = html.escape(label) if label else f"{value:.0f}%"
    return (f'<div class="fp-progress" role="progressbar" aria-valuemin="0" aria-valuemax="100" '
            f'aria-valuenow="{value:.1f}"><div class="fp-progress-fill" style="width:{value:.1f}%"></div>'
            f'<span class="fp-progress-text">{text}</span></div>')


def where(job: dict[str, Any]) -> str:
    """'#2 in queue · ETA 40 s', 'section 1/3 · step 12/25 · ETA 9 s', or the error."""
    parts: list[str] = []
    status = job.get("status")
    position = job.get("position", job.get("queue_position"))
    if status == "pending" and position:
        parts.append(f"#{position} in queue")
    if status == "processing":
        if job.get("total_sections"):
            parts.append(f"section {job.get('section') or 0}/{job['total_sections']}")
        if job.get("total_steps"):
            parts.append(f"step {job.get('step') or 0}/{job['total_steps']}")
    eta = format_eta(job.get("eta_seconds")) if status in ("pending", "processing") else ""
    if eta:
        parts.append(f"ETA {eta}")
    if status == "failed" and job.get("error"):
        parts.append(str(job["error"])[:200])
    return " · ".join(parts)


def status_badge(status: str) -> str:
    return f'<span class="fp-status fp-status-{html.escape(status)}">{html.escape(status)}</span>'


def job_card(job: dict[str, Any]) -> str:
    thumb = job.get("thumbnail") or ""
    image = (f'<img class="fp-thumb" alt="thumbnail" src="{thumb}">' if thumb
             else '<div class="fp-thumb fp-nothumb">no image</div>')
    kind = TYPE_LABELS.get(job.get("type", ""), job.get("type", ""))
    prompt = html.escape(job.get("prompt") or "") or "<em>(no prompt)</em>"
    return (f'<div class="fp-job" data-job-id="{html.escape(job["job_id"])}" '
            f'data-status="{html.escape(job["status"])}">'
            f'{image}<div class="fp-info"><div class="fp-line"><b class="fp-type">{html.escape(kind)}</b> '
            f'{status_badge(job["status"])} <span class="fp-where">{html.escape(where(job))}</span> '
            f'<code class="fp-id">{html.escape(job["job_id"][:8])}</code></div>'
            f'<div class="fp-prompt">{prompt}</div>{progress_bar(job.get("progress"))}</div></div>')


def job_header(status: dict[str, Any]) -> str:
    kind = TYPE_LABELS.get(status.get("type", ""), status.get("type", ""))
    lines = [f'<div class="fp-job-head" data-status="{html.escape(status["status"])}">'
             f'<b>{html.escape(kind)}</b> job <code>{html.escape(status["job_id"])}</code> '
             f'{status_badge(status["status"])}']
    detail = where(status)
    if detail:
        lines.append(f'<div class="fp-where">{html.escape(detail)}</div>')
    if status.get("message"):
        lines.append(f'<div class="fp-message">{html.escape(str(status["message"]))}</div>')
    if status.get("seed") is not None:
        lines.append(f'<div>seed used: <code>{status["seed"]}</code></div>')
    lines.append("</div>")
    return "".join(lines)
