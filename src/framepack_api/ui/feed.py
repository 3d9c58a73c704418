"""One live picture of the server's jobs per UI process, fed by the server's event stream.

A background thread follows `GET /events` (every job's status, progress and preview events) and
applies each event to an in-memory copy of `GET /queue`; a second thread re-reads the queue (and
the ETAs from `GET /status`) when an event changes the order, and every few seconds while jobs are
active, since ETAs and positions move without events. Browser sessions only compare version
numbers against this copy, so a hundred open tabs cost one event stream, not a hundred.

If the event stream is unavailable the refresh thread still runs, so the page degrades to polling.
"""

from __future__ import annotations

import base64
import io
import logging
import threading
import time
from collections.abc import Callable, Generator
from typing import Any, cast

import httpx
from PIL import Image

from framepack_api.client import APIError, Client, ServerEvent

log = logging.getLogger(__name__)

ACTIVE = ("pending", "processing")
THUMB_SIDE = 112
MAX_STATUS_LOOKUPS = 25  # ETAs for at most this many active jobs per refresh
STREAM_SECONDS = 5.0  # longest time one event-stream connection is held (see _follow)


class JobFeed:
    def __init__(self, make_client: Callable[[], Client], *, refresh_seconds: float = 2.0,
                 retry_seconds: float = 2.0) -> None:
        self._make_client = make_client
        self.refresh_seconds = refresh_seconds
        self.retry_seconds = retry_seconds
        self._lock = threading.Lock()
        self._rows: list[dict[str, Any]] = []
        self._thumbs: dict[tuple[str, bool], str] = {}  # (job_id, completed) -> data URI
        self._job_versions: dict[str, int] = {}
        self._version = 0
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.stream_connected = False
        self.last_error: str | None = None

    # -- what sessions read -------------------------------------------------------------------
    @property
    def version(self) -> int:
        with self._lock:
            return self._version

    def rows(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(row) for row in self._rows]

    def job_version(self, job_id: str) -> int:
        with self._lock:
            return self._job_versions.get(job_id, 0)

    def mark_dirty(self) -> None:
        """Re-read the queue now (after this page submitted or cancelled something)."""
        self._dirty.set()

    def ensure_started(self) -> None:
        # Started on the first page load, not at construction: when the UI is mounted inside the
        # server, the server is not listening yet while the app is being built.
        with self._lock:
            if self._threads:
                return
            self._threads = [threading.Thread(target=self._stream_loop, name="ui-events", daemon=True),
                             threading.Thread(target=self._refresh_loop, name="ui-queue", daemon=True)]
        self._dirty.set()
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()

    def refresh_now(self) -> None:
        """Synchronously re-read the queue (what a submit does, so the new job shows at once)."""
        with self._make_client() as api:
            self._refresh(api)

    # -- the two threads ------------------------------------------------------------------------
    def _stream_loop(self) -> None:
        last_id: int | None = None
        while not self._stop.is_set():
            try:
                with self._make_client() as api:
                    self._dirty.set()  # whatever happened while disconnected shows up in the queue
                    # Optimistic: the first read fails fast (and flips it back) when there is no stream.
                    self.stream_connected = True
                    last_id = self._follow(api, last_id)
                    continue  # a planned reconnect: resume at once from last_id
            except (httpx.HTTPError, APIError, ValueError) as exc:
                self.last_error = f"event stream: {exc}"
                log.debug("UI event stream broke: %s", exc)
            self.stream_connected = False
            self._stop.wait(self.retry_seconds)

    def _follow(self, api: Client, last_id: int | None) -> int | None:
        """Read the stream for at most STREAM_SECONDS, then hand back the last event id.

        Never holding one connection for long matters: a server waits for open responses before it
        shuts down, and a UI mounted inside it would otherwise keep its own server from stopping.
        Resuming with Last-Event-ID loses nothing across the reconnect.
        """
        opened = time.monotonic()
        # A generator underneath: closing it closes the HTTP response now, not at garbage collection.
        events = cast(Generator[ServerEvent, None, None],
                      api.events(last_event_id=last_id, read_timeout=STREAM_SECONDS))
        try:
            for event in events:
                last_id = event.id
                self._apply(event.kind, event.data)
                if self._stop.is_set() or time.monotonic() - opened > STREAM_SECONDS:
                    break
        except httpx.ReadTimeout:
            pass  # quiet for STREAM_SECONDS: reconnect
        finally:
            events.close()
        return last_id

    def _refresh_loop(self) -> None:
        with self._make_client() as api:
            while not self._stop.is_set():
                with self._lock:
                    active = any(row["status"] in ACTIVE for row in self._rows)
                # Without the event stream, poll faster so the page still moves.
                interval = self.refresh_seconds if self.stream_connected else min(self.refresh_seconds, 1.0)
                if self._dirty.wait(interval if active or not self.stream_connected else 30.0):
                    time.sleep(0.1)  # let a burst of status events settle into one re-read
                self._dirty.clear()
                if self._stop.is_set():
                    return
                try:
                    self._refresh(api)
                    self.last_error = None
                except (httpx.HTTPError, APIError, ValueError) as exc:
                    self.last_error = f"queue: {exc}"
                    log.debug("UI queue refresh failed: %s", exc)

    # -- state changes ------------------------------------------------------------------------------
    def _refresh(self, api: Client) -> None:
        entries = api.queue()
        rows = []
        for entry in entries:
            row = {"job_id": entry["job_id"], "type": entry.get("type", "video"), "status": entry["status"],
                   "position": entry.get("position"), "progress": float(entry.get("progress") or 0.0),
                   "prompt": entry.get("prompt") or "", "eta_seconds": None, "message": None, "error": None,
                   "step": None, "total_steps": None, "section": None, "total_sections": None}
            rows.append(row)
        for row in [r for r in rows if r["status"] in ACTIVE][:MAX_STATUS_LOOKUPS]:
            try:
                status = api.status(row["job_id"])
            except APIError:
                continue  # gone between the two calls
            for key in ("status", "progress", "eta_seconds", "message", "error", "step", "total_steps",
                        "section", "total_sections"):
                row[key] = status.get(key)
            row["position"] = status.get("queue_position", row["position"])
        for row in rows:
            row["thumbnail"] = self._thumbnail(api, row["job_id"], row["status"] == "completed")
        with self._lock:
            old = {row["job_id"]: row for row in self._rows}
            for row in rows:  # preview counts come only from events: keep them across re-reads
                row["previews"] = old.get(row["job_id"], {}).get("previews", 0)
            changed = [row["job_id"] for row in rows if old.get(row["job_id"]) != row]
            if changed or len(old) != len(rows):
                self._rows = rows
                self._version += 1
                for job_id in changed:
                    self._job_versions[job_id] = self._job_versions.get(job_id, 0) + 1

    def _thumbnail(self, api: Client, job_id: str, completed: bool) -> str:
        key = (job_id, completed)
        with self._lock:
            if key in self._thumbs:
                return self._thumbs[key]
        try:
            uri = thumbnail_data_uri(api.thumbnail(job_id))
        except (APIError, httpx.HTTPError, OSError, ValueError):
            uri = ""  # no image to show (e.g. a text-to-image job): the row says so instead
        with self._lock:
            self._thumbs[key] = uri
        return uri

    def _apply(self, kind: str, data: dict[str, Any]) -> None:
        job_id = data.get("job_id")
        if not job_id:
            return
        with self._lock:
            row = next((r for r in self._rows if r["job_id"] == job_id), None)
            if row is not None:
                for key in ("status", "progress", "step", "total_steps", "section", "total_sections",
                            "message", "error"):
                    if key in data:
                        row[key] = data[key]
                if kind == "preview":
                    row["previews"] = row.get("previews", 0) + 1
                self._version += 1
            self._job_versions[job_id] = self._job_versions.get(job_id, 0) + 1
        if row is None or kind != "progress":
            self._dirty.set()  # a new job or a transition: positions and the order change


def thumbnail_data_uri(jpeg: bytes, side: int = THUMB_SIDE) -> str:
    """A small inline JPEG, so the page shows thumbnails without the browser needing the API."""
    with Image.open(io.BytesIO(jpeg)) as img:
        small = img.convert("RGB")
        small.thumbnail((side, side))
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")
