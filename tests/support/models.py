"""One tiny model for the whole test process, linked into each server's data directory, so that
tests that start several fresh servers build it once instead of once per server."""

from __future__ import annotations

import atexit
import functools
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


@functools.cache
def shared_models_dir() -> Path:
    root = Path(tempfile.mkdtemp(prefix="framepack-tiny-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "framepack_api", "models", "build-tiny", "--data-dir", str(root)],
                   check=True, capture_output=True, timeout=600)
    return root / "models"


def link_tiny_model(data_dir: Path) -> Path:
    """`data_dir/models` → the shared, already built tiny model. Returns data_dir."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "models").symlink_to(shared_models_dir(), target_is_directory=True)
    return data_dir
