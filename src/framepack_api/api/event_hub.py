"""One reader of the event log for every event stream of an API process.

Streams subscribe; while any is open, one task reads the log after its cursor (one query per wake-up
or poll tick, whatever the number of streams) and hands each stream the events it may see: of its
job, of its owner. An idle stream costs a waiting coroutine and nothing else. The reader is woken by
the process's notification listener (notify.py) and polls only as a fallback: every
``poll_seconds`` while push is not live, every ``fallback_seconds`` while it is.

A stream that resumes from an older event id first reads the history up to the reader's cursor
itself (once), then takes the reader's events; one that falls far behind reads its gap itself too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from fastapi.concurrency import run_in_threadpool
from sqlalchemy.engine import Engine

from framepack_api.jobs.events import Event, last_event_id, read_events, read_events_with_owner

log = logging.getLogger(__name__)

BATCH = 500
MAX_BACKLOG = 2000  # events held for one slow stream before it reads its gap from the database itself
# An id missing below a newer event is usually a transaction that took its id and has not committed
# yet (PostgreSQL hands out ids at insert, commits in any order). The reader waits this long for it
# before it treats the id as rolled back, so that no stream misses it or gets it out of order.
GAP_WAIT_SECONDS = 3.0
GAP_RECHECK_SECONDS = 0.05


@dataclass(eq=False)
class Subscription:
    """One stream's view: events after ``after`` of ``job_id`` (None: every job) visible to
    ``owner`` (None: every owner)."""

    hub: EventHub
    after: int
    job_id: str | None
    owner: str | None
    history_until: int  # events up to here are read by the stream itself, not handed by the reader
    backlog: list[Event] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    lagged: bool = False
    overflows: int = 0  # times it fell MAX_BACKLOG behind (for tests and figures)

    def wants(self, event: Event, owner: str | None) -> bool:
        if self.job_id is not None and event.job_id != self.job_id:
            return False
        return self.owner is None or owner == self.owner

    def hand(self, event: Event) -> None:
        if self.lagged:
            return  # it will read this one from the log with the rest of its gap
        if len(self.backlog) >= MAX_BACKLOG:
            # Too slow a client: drop what is held; it reads the gap from the database itself.
            self.backlog.clear()
            self.lagged = True
            self.overflows += 1
        else:
            self.backlog.append(event)
        self.arrived.set()

    async def next(self, timeout: float) -> list[Event]:
        """The next events after ``after`` (read from the log while catching up, else handed by
        the reader); [] when ``timeout`` passed without any."""
        if self.lagged:
            self.lagged = False
            self.backlog.clear()
            self.history_until = self.hub.cursor
        while self.after < self.history_until:
            events = await run_in_threadpool(read_events, self.hub.engine, after_id=self.after,
                                             job_id=self.job_id, owner=self.owner, limit=BATCH)
            events = [e for e in events if e.id <= self.history_until]
            if not events:
                self.after = self.history_until
            else:
                self.after = events[-1].id
            return events  # [] once caught up: the stream may look whether its job has ended
        if not self.backlog:
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), timeout)
        if self.lagged:
            return await self.next(timeout)
        events, self.backlog = [e for e in self.backlog if e.id > self.after], []
        if events:
            self.after = events[-1].id
        return events


class EventHub:
    def __init__(self, engine: Engine, *, poll_seconds: float, fallback_seconds: float,
                 push_live: Callable[[], bool] = lambda: False) -> None:
        self.engine = engine
        self.poll_seconds = poll_seconds
        self.fallback_seconds = fallback_seconds
        self.push_live = push_live
        self.subscriptions: set[Subscription] = set()
        self.cursor = 0
        self.reads = 0  # queries of the log made by the reader (figures and tests)
        self.task: asyncio.Task[None] | None = None
        self.woken = asyncio.Event()
        self.start_lock = asyncio.Lock()
        self.gap_since: float | None = None  # when the reader first stopped at the missing id after its cursor

    def wake(self) -> None:
        """From the event loop's thread (the listener uses call_soon_threadsafe)."""
        self.woken.set()

    @contextlib.asynccontextmanager
    async def subscribe(self, after: int, job_id: str | None, owner: str | None) -> AsyncIterator[Subscription]:
        async with self.start_lock:
            if self.task is None or self.task.done():
                # The reader was idle: start from the log's end (older history is each stream's own).
                self.cursor = await run_in_threadpool(last_event_id, self.engine)
            sub = Subscription(self, after, job_id, owner, history_until=self.cursor)
            self.subscriptions.add(sub)
            if self.task is None or self.task.done():
                self.task = asyncio.create_task(self._read_while_subscribed())
        try:
            yield sub
        finally:
            self.subscriptions.discard(sub)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _read_while_subscribed(self) -> None:
        while self.subscriptions:
            self.woken.clear()
            try:
                await self._read_once()
            except Exception:  # the database may be briefly away; streams wait, the next tick retries
                log.exception("event reader round failed")
            interval = self.fallback_seconds if self.push_live() else self.poll_seconds
            if self.gap_since is not None:  # look again soon: the missing event commits any moment
                interval = GAP_RECHECK_SECONDS
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.woken.wait(), interval)

    async def _read_once(self) -> None:
        while True:
            rows = await run_in_threadpool(read_events_with_owner, self.engine, after_id=self.cursor, limit=BATCH)
            self.reads += 1
            for event, owner in rows:
                if self.cursor and event.id != self.cursor + 1 and not self._gap_given_up():
                    return  # hand nothing past the gap yet: streams get events in id order, none skipped
                self.gap_since = None
                self.cursor = event.id
                for sub in self.subscriptions:
                    if event.id > sub.history_until and sub.wants(event, owner):
                        sub.hand(event)
            if len(rows) < BATCH:
                return

    def _gap_given_up(self) -> bool:
        now = time.monotonic()
        if self.gap_since is None:
            self.gap_since = now
        return now - self.gap_since >= GAP_WAIT_SECONDS
