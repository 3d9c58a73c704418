"""LoRA files: which names a job may use (inside LORA_DIR only), what is there, and in which format.

Torch-free on purpose: the API process checks and lists LoRAs but never loads a model.
"""

from __future__ import annotations

import json
import logging
import re
import struct
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

log = logging.getLogger(__name__)

LORA_SUFFIX = ".safetensors"  # never pickles (.pt/.ckpt): loading one could run code
MAX_HEADER_BYTES = 64 * 1024 * 1024


class LoraError(ValueError):
    """A LoRA request the client got wrong (bad name, unknown file, incompatible weights)."""


# -- finding files ---------------------------------------------------------------------------


def resolve_lora_path(lora_dir: Path | None, name: str) -> Path:
    """The file ``name`` names inside ``lora_dir``; refuses anything that could leave the directory."""
    if lora_dir is None:
        raise LoraError("this server has no LORA_DIR: set FRAMEPACK_API_LORA_DIR to use LoRAs")
    if not name or "\x00" in name or "\\" in name or name.startswith("~"):
        raise LoraError(f"invalid LoRA name {name!r}")
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive:
        raise LoraError(f"LoRA names are relative to LORA_DIR; absolute path {name!r} refused")
    if ".." in PurePosixPath(name).parts:
        raise LoraError(f"'..' is not allowed in LoRA names: {name!r}")
    if not name.endswith(LORA_SUFFIX):
        raise LoraError(f"LoRA files must be {LORA_SUFFIX}: {name!r}")
    root = lora_dir.resolve()
    path = (root / name).resolve()  # follows symlinks, so a link out of the directory is caught
    if root not in path.parents:
        raise LoraError(f"LoRA {name!r} resolves outside LORA_DIR")
    if not path.is_file():
        raise LoraError(f"unknown LoRA {name!r}; GET /loras lists the available ones")
    return path


def list_loras(lora_dir: Path | None) -> list[dict[str, Any]]:
    """Every usable LoRA file under ``lora_dir``: name (what jobs pass), size and detected format."""
    if lora_dir is None or not lora_dir.is_dir():
        return []
    root = lora_dir.resolve()
    found = []
    for path in sorted(root.rglob(f"*{LORA_SUFFIX}")):
        name = path.relative_to(root).as_posix()
        try:
            real = resolve_lora_path(root, name)
            found.append({"name": name, "size_bytes": real.stat().st_size, "format": detect_format(_keys(real))})
        except (LoraError, OSError, ValueError) as exc:  # a link out, or an unreadable file: not offered
            log.debug("skipping LoRA %s: %s", name, exc)
    return found


def _keys(path: Path) -> list[str]:
    """Tensor names from a safetensors header (8-byte little-endian length, then JSON), no weights read."""
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        if length > MAX_HEADER_BYTES:
            raise ValueError(f"safetensors header of {length} bytes")
        header = json.loads(f.read(length))
    return [k for k in header if k != "__metadata__"]


def detect_format(keys: list[str]) -> str:
    if any(k.startswith("lora_unet_") for k in keys):
        return "musubi"
    if any(re.search(r"(^|\.)(double_blocks|single_blocks|final_layer)\.", k) for k in keys):
        return "hunyuan_original"
    if any(".lora_A." in k or ".lora_B." in k for k in keys):
        return "diffusers"
    return "unknown"
