"""MP4 output (PyAV / libx264), reading an MP4 back, and thumbnails.

Every file is written to a temporary name in the same directory and renamed into place, so a reader
(the API serving a result, a client polling) never sees half a file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

Frames = np.ndarray | Sequence[Image.Image]


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``, else delete it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _as_uint8_frames(frames: Frames) -> np.ndarray:
    """Frames as one uint8 array (T, H, W, 3)."""
    if isinstance(frames, np.ndarray):
        arr = frames
    else:
        arr = np.stack([np.asarray(f.convert("RGB")) for f in frames])
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError("no frames to write")
    if arr.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {arr.dtype}")
    return arr


# Keys the MP4 muxer writes as standard iTunes-style atoms; anything else needs mdta tags.
_STANDARD_MP4_KEYS = frozenset({"title", "comment", "description", "artist", "album", "genre", "date",
                                "copyright", "encoder", "composer", "synopsis", "keywords"})


def write_mp4(frames: Frames, path: Path, fps: int = 30, crf: int = 16,
              metadata: dict[str, str] | None = None) -> None:
    """Encode RGB frames as H.264 (yuv420p) MP4 at ``fps`` with x264 ``crf``; ``metadata`` as tags."""
    arr = _as_uint8_frames(frames)
    _, height, width, _ = arr.shape
    # yuv420p halves chroma resolution in both directions: odd sizes cannot be encoded.
    assert height % 2 == 0 and width % 2 == 0, f"even dimensions required, got {width}x{height}"
    if not 0 <= crf <= 51:
        raise ValueError(f"crf must be in 0..51, got {crf}")
    tags = dict(metadata or {})
    # faststart puts the index first so browsers can play while downloading.
    movflags = "+faststart"
    if any(k not in _STANDARD_MP4_KEYS for k in tags):
        movflags += "+use_metadata_tags"
    with atomic_path(path) as tmp:
        container: Any = av.open(str(tmp), mode="w", format="mp4", options={"movflags": movflags})
        try:
            for key, value in tags.items():
                container.metadata[key] = value
            stream = container.add_stream("libx264", rate=Fraction(fps))
            stream.width = width
            stream.height = height
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf)}
            for frame in arr:
                video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
                for packet in stream.encode(video_frame):
                    container.mux(packet)
            for packet in stream.encode():  # flush the encoder's delayed frames
                container.mux(packet)
        finally:
            container.close()


def read_mp4_info(path: Path) -> dict[str, Any]:
    """Frame count (by decoding every frame), size, fps and container metadata of a video file."""
    container: Any = av.open(str(path))
    try:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        rate = stream.average_rate or stream.base_rate
        return {
            "frames": frames,
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "fps": float(rate) if rate else 0.0,
            "metadata": dict(container.metadata),
        }
    finally:
        container.close()


def read_frames(path: Path) -> np.ndarray:
    """Decode every frame of a video as uint8 RGB (T, H, W, 3)."""
    container: Any = av.open(str(path))
    try:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    finally:
        container.close()


def write_thumbnail(frame: np.ndarray | Image.Image, path: Path, max_side: int = 320) -> None:
    """Save ``frame`` as a JPEG whose longer side is at most ``max_side`` (never enlarged)."""
    img = frame.convert("RGB") if isinstance(frame, Image.Image) else Image.fromarray(frame).convert("RGB")
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    with atomic_path(path) as tmp:
        img.save(tmp, format="JPEG", quality=88)
