"""Video extension: continue a finished video by sampling forward from its encoded end (F1's way).

The input video is read, every frame is resized and centre-cropped to the FramePack bucket nearest
to its aspect ratio (as the image path does with a start image), and two things are VAE-encoded:

- the first frame alone: the start latent at RoPE index 0, as F1 keeps its start image throughout
  (FramePack-Studio's "Video F1" extension anchors the video's *last* latent there instead; this
  server keeps F1's own layout, so that extending an F1 video conditions the new sections exactly as
  a longer run of the same job would have). SigLIP sees the first frame too, as in Studio.
- the video's end: the last ``1 + 4·K`` frames (K = max(16 + 2 + 1, window) latents), which is all
  the history a section looks at; encoding only that tail keeps memory bounded for long inputs.
  The Hunyuan VAE is causal and compresses time by 4 (``1 + 4k`` frames → ``1 + k`` latents), so
  the tail is cut to that form from its front: the history always ends at the video's last frame.

Latents are the encoder's mean (not a sample): the input is a given, and its history then depends
on the video alone, not on the job's seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from framepack_api.backends.framepack.section_loop import HISTORY_SIZES, ContinueFrom, execution_device
from framepack_api.media.images import find_nearest_bucket, resize_and_center_crop
from framepack_api.media.video import read_frames
from framepack_api.params import ExtensionOutput


@dataclass(frozen=True)
class InputVideo:
    frames: np.ndarray  # uint8 (T, H, W, 3), every input frame at the bucket size
    height: int
    width: int
    source_width: int
    source_height: int

    @property
    def first(self) -> Image.Image:
        return Image.fromarray(self.frames[0])


def load_input_video(path: Path, resolution: int) -> InputVideo:
    """Decode every frame of ``path`` and fit it to the bucket of ``resolution`` nearest its aspect."""
    raw = read_frames(path)
    source_height, source_width = int(raw.shape[1]), int(raw.shape[2])
    height, width = find_nearest_bucket(source_height, source_width, resolution)
    if (source_height, source_width) == (height, width):
        frames = raw
    else:
        frames = np.stack([np.asarray(resize_and_center_crop(Image.fromarray(f), width, height)) for f in raw])
    return InputVideo(frames, height, width, source_width, source_height)


def tail_latents(window: int) -> int:
    """Latent frames of the video's end that are encoded: the 1x/2x/4x history, or one window to
    decode the first new section against, whichever is longer."""
    return max(sum(HISTORY_SIZES), window)


@torch.no_grad()
def vae_mean_latents(pipe: Any, frames: np.ndarray) -> torch.Tensor:
    """(1, C, 1 + (T-1)/4, h, w) scaled latents of uint8 frames (T, H, W, 3), T = 1 + 4k."""
    vae = pipe.vae
    pixels = torch.from_numpy(frames).permute(3, 0, 1, 2).unsqueeze(0).float() / 127.5 - 1.0
    device = execution_device(pipe)
    mean = vae.encode(pixels.to(device, vae.dtype)).latent_dist.mode()
    return (mean * vae.config.scaling_factor).to(device, torch.float32)


def encode_for_extension(pipe: Any, video: InputVideo, window: int) -> ContinueFrom:
    temporal = int(pipe.vae_scale_factor_temporal)
    usable = (video.frames.shape[0] - 1) // temporal * temporal + 1
    keep = min(usable, 1 + temporal * tail_latents(window))
    start = vae_mean_latents(pipe, video.frames[:1])
    history = vae_mean_latents(pipe, video.frames[-keep:])
    # One window of context when the video has it: later sections are decoded two windows at a time
    # for the same reason (the causal decoder needs what came before).
    return ContinueFrom(start=start, history=history, context=min(window, history.shape[2]))


def redecoded_frames(context: int, temporal: int) -> int:
    """Frames the loop decodes from the ``context`` history latents in front of the new ones."""
    return 1 + temporal * (context - 1)


def join_output(video: InputVideo, made: np.ndarray, context: int, temporal: int,
                output: ExtensionOutput) -> np.ndarray:
    """The job's video: the new frames alone, or the input's own frames followed by them."""
    new = made[redecoded_frames(context, temporal):]
    if output == "new":
        return new
    return np.concatenate([video.frames, new], axis=0)
