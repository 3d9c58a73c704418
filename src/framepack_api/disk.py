"""The free-space floor of the data directory: one measurement shared by submits, workers and /health.

A full disk must show up as a clear refusal (507 on submit, a failed job with a reason in the
worker) rather than as a traceback half-way through writing a file.
"""

from __future__ import annotations

import errno
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from framepack_api.errors import DiskFull, InsufficientStorage

MB = 1024 * 1024
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


@dataclass(frozen=True)
class Space:
    free_mb: float
    floor_mb: float

    @property
    def low(self) -> bool:
        return self.floor_mb > 0 and self.free_mb < self.floor_mb

    def reason(self) -> str:
        return (f"free disk space is {self.free_mb:.0f} MB, below the floor of {self.floor_mb:.0f} MB "
                "(FRAMEPACK_API_MIN_FREE_DISK_MB)")


def measure(path: Path, floor_mb: float) -> Space:
    """Free space of the filesystem holding ``path`` (its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return Space(free_mb=shutil.disk_usage(probe).free / MB, floor_mb=floor_mb)


def require_space(path: Path, floor_mb: float) -> None:
    """Refuse a submit before any input file is written."""
    if floor_mb <= 0:
        return
    space = measure(path, floor_mb)
    if space.low:
        raise InsufficientStorage(f"not accepting jobs: {space.reason()}")


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS


def full_disk_error(exc: BaseException) -> InsufficientStorage:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return InsufficientStorage(f"not accepting jobs: the disk is full ({reason})")


class DiskGuard:
    """Checked at every sampling step of a running job; measures at most once per ``every`` seconds,
    since statvfs is cheap but a step can be a millisecond on the tiny model."""

    def __init__(self, path: Path, floor_mb: float, every: float = 1.0) -> None:
        self.path, self.floor_mb, self.every = path, floor_mb, every
        self.last = float("-inf")

    def low(self) -> Space | None:
        if self.floor_mb <= 0:
            return None
        space = measure(self.path, self.floor_mb)
        return space if space.low else None

    def check(self, *, fresh: bool = False) -> None:
        """Raise DiskFull below the floor; ``fresh`` measures even when it did a moment ago."""
        now = time.monotonic()
        if not fresh and now - self.last < self.every:
            return
        self.last = now
        space = self.low()
        if space is not None:
            raise DiskFull(f"stopped before writing its results: {space.reason()}")
