"""The video so far, section by section: the decoded history of the section loop and its partial MP4s.

``section_loop.run_sections`` decodes each finished section and hands it to ``SectionHistory.add``,
which joins it to the frames before it with FramePack's cross-fade (``cross_fade``) in time order;
the loop's final video is ``SectionHistory.frames`` after the last section, and ``PartialVideoWriter``
writes the same frames as ``partial.mp4`` after every section, so the last partial is the final video.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from framepack_api.media.video import write_mp4


def cross_fade(earlier: torch.Tensor, later: torch.Tensor, overlap: int) -> torch.Tensor:
    """Join two (B, C, F, H, W) videos in time order, blending the ``overlap`` frames where they meet.

    The last ``overlap`` frames of ``earlier`` and the first ``overlap`` of ``later`` show the same
    moment (both sections were decoded from the shared latents); the blend weight of ``earlier``
    falls linearly from 1 to 0 across them, as in FramePack's soft append.
    """
    if overlap <= 0:
        return torch.cat([earlier, later], dim=2)
    if earlier.shape[2] < overlap or later.shape[2] < overlap:
        raise ValueError(f"cannot blend {overlap} frames of videos with {earlier.shape[2]} and "
                         f"{later.shape[2]} frames")
    weight = torch.linspace(1, 0, overlap, dtype=earlier.dtype, device=earlier.device).view(1, 1, -1, 1, 1)
    blended = weight * earlier[:, :, -overlap:] + (1 - weight) * later[:, :, :overlap]
    return torch.cat([earlier[:, :, :-overlap], blended, later[:, :, overlap:]], dim=2).to(earlier)


class SectionHistory:
    """A section loop's decoded video, joined section by section.

    Sampling ``reverse`` (inverted anti-drifting) produces the video back to front, so each new
    section is joined *before* the history; ``forward`` (vanilla) joins it after. The join
    cross-fades ``overlap = (latent_window_size - 1) * temporal_factor + 1`` frames, as FramePack's
    loop (and diffusers' pipeline) does.

    Memory: a cross-fade only ever touches the ``overlap`` frames at the open edge, so only those
    stay as decoded tensors (on the CPU, in the decoder's dtype, so the blend rounds like the
    pipeline's); every other frame is converted to uint8 at once. A 2-minute 480p video is held
    once in uint8 on the host instead of a second float copy on the GPU.
    """

    def __init__(self, pipe: Any, reverse: bool, latent_window_size: int) -> None:
        self._pipe = pipe
        self.reverse = reverse
        self.temporal = int(pipe.vae_scale_factor_temporal)
        self.overlap = (latent_window_size - 1) * self.temporal + 1
        self._fixed: list[np.ndarray] = []  # uint8 (F, H, W, 3) chunks in time order
        self._edge: torch.Tensor | None = None  # (B, C, F, H, W) frames a later section may blend
        self.sections = 0

    def _to_uint8(self, video: torch.Tensor) -> np.ndarray:
        # The pipeline's video post-processing (denormalise, to numpy), then uint8 rounding.
        frames = np.asarray(self._pipe.video_processor.postprocess_video(video, output_type="np")[0])
        return (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)

    def add(self, decoded: torch.Tensor) -> None:
        """Join one section's decoded frames (B, C, F, H, W)."""
        # copy=True: on a CPU pipeline .to("cpu") would alias the decoder's tensor.
        current = decoded.detach().to("cpu", copy=True)
        if self._edge is None:
            joined = current
        elif self.reverse:
            joined = cross_fade(current, self._edge, self.overlap)
        else:
            joined = cross_fade(self._edge, current, self.overlap)
        self.sections += 1
        if joined.shape[2] <= self.overlap:
            self._edge = joined
            return
        if self.reverse:
            self._edge = joined[:, :, : self.overlap]
            self._fixed.insert(0, self._to_uint8(joined[:, :, self.overlap:]))
        else:
            self._edge = joined[:, :, -self.overlap:]
            self._fixed.append(self._to_uint8(joined[:, :, : -self.overlap]))

    def frames(self, temporal_factor: int) -> np.ndarray:
        """The video so far as uint8 (T, H, W, 3), cut to a multiple of ``temporal_factor`` plus
        one frame (as FramePack and the pipeline cut their final output)."""
        if self._edge is None:
            raise ValueError("no section decoded yet")
        edge = self._to_uint8(self._edge)
        chunks = [edge, *self._fixed] if self.reverse else [*self._fixed, edge]
        video = np.concatenate(chunks, axis=0)
        keep = (video.shape[0] - 1) // temporal_factor * temporal_factor + 1
        return video[:keep]


class PartialVideoWriter:
    """After every decoded section, write the video so far to ``path`` (atomically) and report it."""

    def __init__(self, path: Path, fps: int, crf: int, report: Callable[[Path], None]) -> None:
        self._path = path
        self._fps = fps
        self._crf = crf
        self._report = report
        self.frame_counts: list[int] = []  # frames of each partial written, for logs and tests
        self.seconds = 0.0  # joining + encoding, without the report callback's own time

    def __call__(self, history: SectionHistory) -> None:
        started = time.perf_counter()
        frames = history.frames(history.temporal)
        write_mp4(frames, self._path, fps=self._fps, crf=self._crf)  # temp file + rename
        self.frame_counts.append(int(frames.shape[0]))
        self.seconds += time.perf_counter() - started
        self._report(self._path)
