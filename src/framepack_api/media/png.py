"""PNG files that carry their job's parameters, and ZIPs of them for batches.

The parameters go into one ``tEXt`` chunk named ``parameters`` as JSON (prompt, seed and the
settings), the chunk image tools already show, so an image alone says how to make it again.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, PngImagePlugin

PARAMETERS_KEY = "parameters"


def write_png(pixels: np.ndarray | Image.Image, path: Path, parameters: dict[str, Any]) -> Path:
    """Write an RGB PNG with ``parameters`` as JSON in a tEXt chunk (atomically: no half files)."""
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(np.asarray(pixels, dtype=np.uint8))
    info = PngImagePlugin.PngInfo()
    # tEXt is Latin-1 only; ensure_ascii escapes everything else, so any prompt survives the round trip.
    info.add_text(PARAMETERS_KEY, json.dumps(parameters, sort_keys=True, ensure_ascii=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".png")
    try:
        with os.fdopen(fd, "wb") as f:
            image.convert("RGB").save(f, format="PNG", pnginfo=info)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_png_parameters(source: Path | bytes) -> dict[str, Any]:
    """The ``parameters`` JSON of a PNG written by ``write_png``; {} when it has none."""
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    with Image.open(stream) as img:
        text = getattr(img, "text", {}).get(PARAMETERS_KEY)
    if not text:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {}


def write_zip(files: Iterable[Path], path: Path) -> Path:
    """A ZIP of ``files`` under their own names. PNGs are compressed already: stored, not deflated."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".zip")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
            for file in files:
                archive.write(file, arcname=file.name)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
