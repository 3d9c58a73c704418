"""Keyframes: images pinned at times inside a reverse-sampled video (the end image generalised).

FramePack samples ``reverse`` videos last section first. Each section is conditioned on one clean
latent frame right after its window in RoPE time (the "1x" history latent): for the first section
made (the video's last) that is the end image's latent, for every later one the first latent of the
section after it, already made. A keyframe takes that slot: it becomes the 1x clean latent of the
section whose end lies nearest to the keyframe's time, so that section is sampled to lead into it,
exactly as the last section is sampled to lead into the end image.

Section ``i`` (0-based, time order) ends at ``(i + 1) * 4 * latent_window_size / 30`` seconds; a
keyframe at ``t`` anchors section ``round(t / section_seconds) - 1``, clamped into the video (a time
before the first section's end anchors the first section). A keyframe at the video's end anchors the
last section: it is the end image. FramePack-Studio has only this end-frame case (its "Original with
Endframe" model writes the end latent into the history's 1x slot before the first section made);
keyframes inside the video apply the same rule to the section that ends there.

Only the 1x slot is replaced, and only for the anchored section; the 2x/4x history stays what was
made, so later sections (earlier in time) see the real frames, not the keyframe.
"""

from __future__ import annotations

import math
from typing import Any

FPS = 30
VAE_TEMPORAL = 4
MAX_KEYFRAMES = 8  # besides the end image; each one is a VAE encode and a SigLIP encode per job


def keyframe_input(index: int) -> str:
    """The stored input name of the ``index``-th keyframe image (order of ``keyframe_times``)."""
    return f"keyframe_{index}"


def is_keyframe_input(name: str) -> bool:
    return name.startswith("keyframe_")


def keyframe_upload_field(name: str) -> str:
    """The request field an input came from, for errors: ``keyframe_2`` → ``keyframe_images.2``."""
    return f"keyframe_images.{name.removeprefix('keyframe_')}" if is_keyframe_input(name) else name


class KeyframeError(ValueError):
    """Keyframe times that cannot be honoured; the message says why, for a 422."""


def section_seconds(latent_window_size: int) -> float:
    return VAE_TEMPORAL * latent_window_size / FPS


def section_end_seconds(section: int, latent_window_size: int) -> float:
    """When section ``section`` (0-based, time order) ends, i.e. where its 1x clean latent sits."""
    return (section + 1) * section_seconds(latent_window_size)


def keyframe_section(time: float, sections: int, latent_window_size: int) -> int:
    """The section (0-based, time order) a keyframe at ``time`` seconds anchors: the one whose end is
    nearest (ties go to the later section), clamped into the video."""
    nearest_end = math.floor(time / section_seconds(latent_window_size) + 0.5 + 1e-9)
    return min(max(nearest_end - 1, 0), sections - 1)


def keyframe_sections(times: list[float], video_length: float, sections: int, latent_window_size: int,
                      has_end_image: bool) -> list[int]:
    """The anchored section of every keyframe, in the order given; raises ``KeyframeError`` for a time
    outside (0, video_length] or two anchors (keyframes, or a keyframe and the end image) on one section."""
    if len(times) > MAX_KEYFRAMES:
        raise KeyframeError(f"at most {MAX_KEYFRAMES} keyframes, got {len(times)}")
    owners: dict[int, str] = {sections - 1: "the end image"} if has_end_image else {}
    anchored = []
    for time in times:
        if not 0 < time <= video_length:
            raise KeyframeError(f"time {time:g}s is outside the video: it must be > 0 and <= "
                                f"video_length ({video_length:g}s)")
        section = keyframe_section(time, sections, latent_window_size)
        if section in owners:
            raise KeyframeError(
                f"keyframe at {time:g}s anchors section {section + 1} (ending at "
                f"{section_end_seconds(section, latent_window_size):g}s), as {owners[section]} does; "
                f"sections here are {section_seconds(latent_window_size):g}s long")
        owners[section] = f"the keyframe at {time:g}s"
        anchored.append(section)
    return anchored


def describe_keyframes(times: list[float], sections: int, latent_window_size: int) -> list[dict[str, Any]]:
    """For ``/status``: each keyframe's time, the section (1-based, time order) it anchors and where
    that section ends, in time order."""
    out = []
    for time in sorted(times):
        section = keyframe_section(time, sections, latent_window_size)
        out.append({"time": time, "section": section + 1,
                    "pinned_at": round(section_end_seconds(section, latent_window_size), 4)})
    return out
