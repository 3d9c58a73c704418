"""What every part of the page shares: the API client, the live job feed, a cache for results."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from framepack_api.client import APIError, Client
from framepack_api.ui.feed import JobFeed


@dataclass
class UIContext:
    server_url: str
    api_key: str | None = None
    timeout: float = 60.0
    # Results are downloaded once per UI process and handed to Gradio as files: the browser never
    # needs to reach the API itself (it may be remote, or behind a key the browser doesn't hold).
    # One fixed directory (not a new temporary one per start, which nothing removed): the mounted page
    # uses DATA_DIR/ui-cache, `framepack-api ui` the user's cache directory.
    cache_dir: Path = field(default_factory=lambda: default_cache_dir())

    def __post_init__(self) -> None:
        prune_cache(self.cache_dir, CACHE_MAX_AGE_SECONDS)
        self.api = self.client()
        self.feed = JobFeed(self.client)

    def server_is_tiny(self) -> bool:
        """Whether the server runs the tiny random-weight model (its /health says so)."""
        try:
            return bool(self.api.health().get("tiny_model"))
        except (APIError, httpx.HTTPError, ValueError):
            return False  # unknown: no notice rather than a wrong one

    def client(self) -> Client:
        return Client(self.server_url, timeout=self.timeout, api_key=self.api_key)


# Downloaded results are kept this long (they can be fetched again from the server at any time).
CACHE_MAX_AGE_SECONDS = 24 * 3600


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "framepack-api" / "ui"


def prune_cache(cache_dir: Path, max_age: float) -> None:
    """Create the cache directory; remove job folders in it that are older than ``max_age``. Several
    page processes may share it (each job's files are the same for all), so nothing newer is touched."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - max_age
    for entry in cache_dir.iterdir():
        try:
            if entry.stat().st_mtime >= cutoff:
                continue
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError:
            pass  # another process removed it first
