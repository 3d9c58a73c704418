"""What a backend is: turns one job's params into files, reporting through a RunContext.

Backends know nothing of HTTP or SQL. The worker builds the RunContext over the job store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from framepack_api.params import JobType


@dataclass(frozen=True)
class Progress:
    step: int  # steps done in the current section, 0..total_steps
    total_steps: int  # steps per section
    section: int  # 1-based current section
    total_sections: int
    message: str = ""

    @property
    def percent(self) -> float:
        """Overall percent across all sections, never per section."""
        done = (self.section - 1) * self.total_steps + self.step
        total = max(self.total_sections * self.total_steps, 1)
        return round(min(100.0, 100.0 * done / total), 2)


@dataclass
class RunContext:
    """How a backend talks back. Every callback may raise to stop the run (cancel, lost lease,
    shutdown): backends must let those exceptions through."""

    workdir: Path
    progress: Callable[[Progress], None] = lambda p: None
    # A JPEG of the newest latent preview, written in workdir; the worker moves it into storage.
    preview: Callable[[Path], None] = lambda p: None
    # An MP4 of the video so far, written in workdir after each finished section.
    partial_video: Callable[[Path], None] = lambda p: None
    cancelled: Callable[[], bool] = lambda: False
    # The seed the job runs with, as soon as it is drawn (before the first step), so /status shows it
    # while the job runs instead of only once it completed.
    seed: Callable[[int], None] = lambda s: None


@dataclass
class JobOutput:
    """What a backend made. Paths are inside RunContext.workdir."""

    files: dict[str, Path]  # e.g. {"video": .../video.mp4, "thumbnail": .../thumbnail.jpg}
    seed: int
    info: dict[str, Any] = field(default_factory=dict)  # frames, fps, width, height, timings


class Backend(Protocol):
    preset: str
    is_tiny: bool

    def run(self, job_type: JobType, params: dict[str, Any], inputs: dict[str, Path],
            ctx: RunContext) -> JobOutput: ...
