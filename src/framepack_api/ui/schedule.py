"""The video form's helpers for prompt schedules and keyframes: a live preview of how the prompt
and keyframes land on sections (the same parse as the server's, so what it shows is what ``/status``
will show), and reading the keyframe times typed into a text box."""

from __future__ import annotations

import html
from typing import Any

from pydantic import ValidationError

from framepack_api.params import VideoParams

PROMPT_HELP = ("One prompt for the whole video, or a schedule: `[0s] a girl stands [2s] she waves "
               "[3.5s] she turns away` — each prompt is in force from its time (seconds, the first at 0s) "
               "until the next; every section uses the prompt in force at its first frame.")


def parse_times(text: str | None) -> list[float]:
    """Keyframe times as typed: numbers separated by commas or spaces, an optional trailing "s"."""
    times = []
    for part in (text or "").replace(",", " ").split():
        try:
            times.append(float(part.lower().removesuffix("s")))
        except ValueError:
            raise ValueError(f"{part!r} is not a time in seconds") from None
    return times


def _errors(exc: ValidationError) -> dict[str, str]:
    return {str(e["loc"][0]) if e["loc"] else "": e["msg"] for e in exc.errors(include_url=False)}


def schedule_preview(prompt: str | None, video_length: float | None, latent_window_size: float | None,
                     keyframe_times: str | None = None, sampling_mode: str | None = "reverse",
                     has_end_image: bool = False) -> str:
    """HTML: the sections each scheduled prompt conditions and the section each keyframe anchors, or
    the server's 422 message for the prompt or the keyframe times."""
    fields: dict[str, Any] = {"prompt": prompt or "", "sampling_mode": sampling_mode or "reverse",
                              "has_end_image": has_end_image}
    if video_length:
        fields["video_length"] = float(video_length)
    if latent_window_size:
        fields["latent_window_size"] = int(latent_window_size)
    problems: list[str] = []
    try:
        fields["keyframe_times"] = parse_times(keyframe_times)
    except ValueError as exc:
        problems.append(f"keyframe times: {exc}")
    try:
        params = VideoParams.model_validate(fields)
    except ValidationError as exc:
        errors = _errors(exc)
        problems += [f"{name or 'parameters'}: {msg}" for name, msg in errors.items()
                     if name in ("prompt", "keyframe_times", "")]
        if not problems:  # another field is out of range; its own slider says so
            return ""
        return "".join(f'<div class="fp-error">{html.escape(p)}</div>' for p in problems)
    if problems:
        return "".join(f'<div class="fp-error">{html.escape(p)}</div>' for p in problems)
    sections = params.sections()
    lines = []
    schedule = params.prompt_schedule()
    if schedule is None:
        lines.append(f"One prompt for all {sections} section(s).")
    else:
        for cue in schedule:
            where = (f"section(s) {', '.join(map(str, cue['sections']))}" if cue["sections"]
                     else "no section (it starts inside one that an earlier prompt already has)")
            lines.append(f"[{cue['start']:g}s] {html.escape(cue['prompt'])} → {where}")
    for keyframe in params.keyframes() or []:
        lines.append(f"keyframe at {keyframe['time']:g}s → end of section {keyframe['section']} "
                     f"({keyframe['pinned_at']:g}s)")
    return ('<div class="fp-schedule"><b>Sections</b> (in time order, 1-based, of '
            f"{sections}):<br>" + "<br>".join(lines) + "</div>")
