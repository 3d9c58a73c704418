"""Timestamped prompts: a different prompt for each stretch of a video.

A video job's ``prompt`` is either plain text (one prompt for the whole video) or a schedule, in
one of two forms:

    [0s] a girl stands still [2s] she waves [3.5s] she turns away
    [{"start": 0, "prompt": "a girl stands still"}, {"start": 2, "prompt": "she waves"}]

A prompt is in force from its start time until the next one starts. FramePack samples a video in
sections of ``4 * latent_window_size`` frames (30 fps), and each section is conditioned on the
prompt in force at the section's first frame. Times are seconds from the start of the video; the
first must be 0, later ones strictly increasing and before the end of the video.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

FPS = 30
VAE_TEMPORAL = 4  # pixel frames per latent frame
# A time marker: "[2s]", "[ 2.5 s ]"; the unit is required so that "[2]" is reported, not taken as text.
_MARKER = re.compile(r"\[\s*([-+]?\d*\.?\d+)\s*(s?)\s*\]", re.IGNORECASE)
_LOOKS_LIKE_MARKER = re.compile(r"\[\s*[-+]?\d")


class ScheduleError(ValueError):
    """A malformed prompt schedule; the message says what is wrong, for a 422."""


@dataclass(frozen=True)
class PromptCue:
    start: float  # seconds
    prompt: str


def is_schedule(text: str) -> bool:
    """Whether ``text`` is meant as a schedule: it starts with a time marker or a JSON list of objects."""
    stripped = text.lstrip()
    return bool(_LOOKS_LIKE_MARKER.match(stripped)) or bool(re.match(r"\[\s*\{", stripped))


def parse_schedule(text: str) -> list[PromptCue] | None:
    """The cues of a schedule, checked for order and content; None for a plain prompt.

    Raises ``ScheduleError`` naming the problem (malformed, negative or unordered times, a first
    time other than 0, an empty prompt).
    """
    if not is_schedule(text):
        return None
    stripped = text.strip()
    cues = _parse_json(stripped) if re.match(r"\[\s*\{", stripped) else _parse_markers(stripped)
    _check(cues)
    return cues


def _parse_markers(text: str) -> list[PromptCue]:
    parts = _MARKER.split(text)
    # split with two groups: [before, time, unit, text, time, unit, text, ...]
    if parts[0].strip():
        raise ScheduleError(f"text before the first time marker: {parts[0].strip()[:40]!r}")
    cues = []
    for i in range(1, len(parts), 3):
        number, unit, body = parts[i], parts[i + 1], parts[i + 2]
        if not unit:
            raise ScheduleError(f"time [{number}] needs a unit: write [{number}s]")
        cues.append(PromptCue(start=float(number), prompt=body.strip()))
    return cues


def _parse_json(text: str) -> list[PromptCue]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScheduleError(f"malformed JSON schedule: {exc.msg} at character {exc.pos}") from None
    if not isinstance(items, list):
        raise ScheduleError("a JSON schedule must be a list of {\"start\", \"prompt\"} objects")
    return [_cue_from_json(i, item) for i, item in enumerate(items)]


def _cue_from_json(index: int, item: Any) -> PromptCue:
    where = f"schedule item {index}"
    if not isinstance(item, dict):
        raise ScheduleError(f"{where} must be an object with \"start\" and \"prompt\"")
    unknown = sorted(set(item) - {"start", "prompt"})
    if unknown:
        raise ScheduleError(f"{where} has unknown keys: {', '.join(unknown)}")
    start, prompt = item.get("start"), item.get("prompt")
    if isinstance(start, bool) or not isinstance(start, (int, float)) or not math.isfinite(start):
        raise ScheduleError(f"{where}: \"start\" must be a number of seconds")
    if not isinstance(prompt, str):
        raise ScheduleError(f"{where}: \"prompt\" must be text")
    return PromptCue(start=float(start), prompt=prompt.strip())


def _check(cues: list[PromptCue]) -> None:
    if not cues:
        raise ScheduleError("the schedule has no prompts")
    for i, cue in enumerate(cues):
        if cue.start < 0:
            raise ScheduleError(f"time {cue.start:g}s is negative")
        if not cue.prompt:
            raise ScheduleError(f"the prompt at {cue.start:g}s is empty")
        if i and cue.start <= cues[i - 1].start:
            raise ScheduleError(f"times must increase: {cue.start:g}s comes after {cues[i - 1].start:g}s")
    if cues[0].start != 0:
        raise ScheduleError(f"the first prompt must start at 0s, not {cues[0].start:g}s")


def check_length(cues: list[PromptCue], video_length: float) -> None:
    """A cue at or after the end of the video would never be used."""
    late = [cue for cue in cues if cue.start >= video_length]
    if late:
        raise ScheduleError(f"time {late[0].start:g}s is not before the end of the video ({video_length:g}s)")


def section_start_seconds(section: int, latent_window_size: int) -> float:
    """When a section (0-based, in time order) starts: each covers 4 * window frames at 30 fps."""
    return section * VAE_TEMPORAL * latent_window_size / FPS


def cue_index_by_section(cues: list[PromptCue], sections: int, latent_window_size: int) -> list[int]:
    """For each section in time order, the index of the cue in force at its first frame."""
    chosen = []
    for section in range(sections):
        # Compared in frames with a tolerance, so that a cue at exactly a section's start (2.4s =
        # frame 72) is in force there despite float rounding.
        first_frame = section * VAE_TEMPORAL * latent_window_size
        chosen.append(max(i for i, cue in enumerate(cues) if cue.start * FPS <= first_frame + 1e-6))
    return chosen


def section_prompts(prompt: str, sections: int, latent_window_size: int) -> list[str]:
    """The prompt of every section, in time order (a plain prompt for all of them)."""
    cues = parse_schedule(prompt)
    if cues is None:
        return [prompt] * sections
    return [cues[i].prompt for i in cue_index_by_section(cues, sections, latent_window_size)]


def describe_schedule(prompt: str, sections: int, latent_window_size: int) -> list[dict[str, Any]] | None:
    """The schedule as parsed, for ``/status`` and the job's info: each prompt with its start time
    and the sections (1-based, in time order) it conditions; None for a plain prompt."""
    cues = parse_schedule(prompt)
    if cues is None:
        return None
    owner = cue_index_by_section(cues, sections, latent_window_size)
    return [{"start": cue.start, "prompt": cue.prompt,
             "sections": [s + 1 for s, i in enumerate(owner) if i == index]}
            for index, cue in enumerate(cues)]
