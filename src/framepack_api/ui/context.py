"""What every part of the page shares: the API client, the live job feed, a cache for results."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from framepack_api.client import Client
from framepack_api.ui.feed import JobFeed


@dataclass
class UIContext:
    server_url: str
    api_key: str | None = None
    timeout: float = 60.0
    # Results are downloaded once per UI process and handed to Gradio as files: the browser never
    # needs to reach the API itself (it may be remote, or behind a key the browser doesn't hold).
    cache_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="framepack-ui-")))

    def __post_init__(self) -> None:
        self.api = self.client()
        self.feed = JobFeed(self.client)

    def client(self) -> Client:
        return Client(self.server_url, timeout=self.timeout, api_key=self.api_key)
