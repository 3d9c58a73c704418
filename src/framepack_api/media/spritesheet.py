"""A spritesheet: frames sampled evenly from a video, laid out left to right, top to bottom."""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image

from framepack_api.media.video import atomic_path, read_frames

MAX_TILES = 16
TILE_MAX_SIDE = 160


def write_spritesheet(video: Path, path: Path, *, max_tiles: int = MAX_TILES,
                      tile_max_side: int = TILE_MAX_SIDE) -> tuple[int, int]:
    """Write a JPEG grid of up to ``max_tiles`` frames of ``video``; returns (columns, rows)."""
    frames = read_frames(video)
    count = min(max_tiles, len(frames))
    # Evenly spaced, always including the first and the last frame.
    picks = [round(i * (len(frames) - 1) / max(count - 1, 1)) for i in range(count)]
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    tiles = []
    for index in picks:
        tile = Image.fromarray(frames[index])
        tile.thumbnail((tile_max_side, tile_max_side), Image.Resampling.LANCZOS)
        tiles.append(tile)
    tile_w, tile_h = tiles[0].size
    sheet = Image.new("RGB", (columns * tile_w, rows * tile_h), (0, 0, 0))
    for n, tile in enumerate(tiles):
        sheet.paste(tile, ((n % columns) * tile_w, (n // columns) * tile_h))
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="JPEG", quality=85)
    return columns, rows
