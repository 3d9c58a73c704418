"""Watching a running ``HunyuanVideoFramepackPipeline`` call from outside, without copying it.

The pipeline decodes each finished section inside its loop (``self.vae.decode``) and joins the
result into a local ``history_video`` with ``_soft_append``. ``observe_vae_decode`` wraps
``vae.decode`` for one call so every section's decoded frames are seen as they appear;
``SectionHistory`` rebuilds the video so far from them with the pipeline's own ``_soft_append``, in
the pipeline's order and overlap; ``PartialVideoWriter`` writes that as ``partial.mp4`` after every
section. None of it changes what the pipeline computes: the wrapper returns the decoder's output
untouched and the history keeps its own copies.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from framepack_api.media.video import write_mp4


@contextlib.contextmanager
def observe_vae_decode(vae: Any, on_decoded: Callable[[torch.Tensor], None]) -> Iterator[None]:
    """Call ``on_decoded(frames)`` with the (B, C, F, H, W) output of every ``vae.decode`` while open.

    The wrapper is an instance attribute shadowing the class's method, so removing it restores the
    model exactly; it is removed even when the pipeline or ``on_decoded`` raises (a cancelled job
    must leave a clean model for the next one). Exceptions from ``on_decoded`` propagate, which is
    how a cancel raised from the partial-video callback stops the run.
    """
    shadowed = "decode" in vars(vae)  # someone else's wrapper: put it back afterwards, not ours
    original = vae.decode

    def decode(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        # return_dict=False gives a tuple; True gives DecoderOutput(sample=...)
        on_decoded(out[0] if isinstance(out, tuple) else out.sample)
        return out

    vae.decode = decode
    try:
        yield
    finally:
        if shadowed:
            vae.decode = original
        else:
            del vae.decode


class SectionHistory:
    """The pipeline's ``history_video`` rebuilt from its per-section decodes.

    Sampling ``reverse`` (inverted anti-drifting) produces the video back to front, so each new
    section is joined *before* the history; ``forward`` (vanilla) joins it after. The join
    cross-fades ``overlap = (latent_window_size - 1) * temporal_factor + 1`` frames, exactly as the
    pipeline's loop does.

    Memory: a cross-fade only ever touches the ``overlap`` frames at the open edge, so only those
    stay as decoded tensors (on the CPU, in the decoder's dtype, so the blend rounds like the
    pipeline's); every other frame is converted to uint8 at once. A 2-minute 480p video is held
    once in uint8 on the host instead of a second float copy on the GPU.
    """

    def __init__(self, pipe: Any, reverse: bool, latent_window_size: int) -> None:
        self._pipe = pipe
        self.reverse = reverse
        self.overlap = (latent_window_size - 1) * int(pipe.vae_scale_factor_temporal) + 1
        self._fixed: list[np.ndarray] = []  # uint8 (F, H, W, 3) chunks in time order
        self._edge: torch.Tensor | None = None  # (B, C, F, H, W) frames a later section may blend
        self.sections = 0

    def _to_uint8(self, video: torch.Tensor) -> np.ndarray:
        # The pipeline's own post-processing (denormalise, to numpy), then the same rounding that
        # generate_video applies to the final output.
        frames = np.asarray(self._pipe.video_processor.postprocess_video(video, output_type="np")[0])
        return (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)

    def add(self, decoded: torch.Tensor) -> None:
        """Join one section's decoded frames (B, C, F, H, W)."""
        # copy=True: on a CPU pipeline .to("cpu") would alias the pipeline's tensor.
        current = decoded.detach().to("cpu", copy=True)
        if self._edge is None:
            joined = current
        elif self.reverse:
            joined = self._pipe._soft_append(current, self._edge, self.overlap)
        else:
            joined = self._pipe._soft_append(self._edge, current, self.overlap)
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
        """The video so far as uint8 (T, H, W, 3), cut like the pipeline cuts its final output
        (to a multiple of ``temporal_factor`` plus one frame)."""
        if self._edge is None:
            raise ValueError("no section decoded yet")
        edge = self._to_uint8(self._edge)
        chunks = [edge, *self._fixed] if self.reverse else [*self._fixed, edge]
        video = np.concatenate(chunks, axis=0)
        keep = (video.shape[0] - 1) // temporal_factor * temporal_factor + 1
        return video[:keep]


class PartialVideoWriter:
    """After every decoded section, write the video so far to ``path`` (atomically) and report it."""

    def __init__(self, pipe: Any, reverse: bool, latent_window_size: int, path: Path, fps: int,
                 crf: int, report: Callable[[Path], None]) -> None:
        self.history = SectionHistory(pipe, reverse, latent_window_size)
        self._temporal = int(pipe.vae_scale_factor_temporal)
        self._path = path
        self._fps = fps
        self._crf = crf
        self._report = report
        self.frame_counts: list[int] = []  # frames of each partial written, for logs and tests
        self.seconds = 0.0  # rebuilding + encoding, without the report callback's own time

    def __call__(self, decoded: torch.Tensor) -> None:
        started = time.perf_counter()
        self.history.add(decoded)
        frames = self.history.frames(self._temporal)
        write_mp4(frames, self._path, fps=self._fps, crf=self._crf)  # temp file + rename
        self.frame_counts.append(int(frames.shape[0]))
        self.seconds += time.perf_counter() - started
        self._report(self._path)
