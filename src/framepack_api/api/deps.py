"""Per-app state and the dependencies routes ask for, as Annotated aliases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.engine import Engine

from framepack_api.api.event_hub import EventHub
from framepack_api.jobs.notify import Listener
from framepack_api.jobs.status_read import StatusReader
from framepack_api.jobs.store import JobStore
from framepack_api.settings import Settings
from framepack_api.storage import Storage


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    store: JobStore
    storage: Storage
    model: str  # the preset workers load: "tiny" or "framepack"
    default_resolution: int
    events: EventHub  # the one reader of the event log that every stream of this process shares
    listener: Listener | None = None  # push notifications (None: polling only)
    _status_reader: StatusReader | None = None

    @property
    def status_reader(self) -> StatusReader:
        """/status's compiled statements and learned pace, one per process (made on first use)."""
        if self._status_reader is None:
            self._status_reader = StatusReader(self.engine)
        return self._status_reader


# async on purpose: FastAPI runs a plain `def` dependency in a worker thread, a thread hop per
# dependency per request for what is an attribute lookup (the most of /status's cost, measured).
def get_state_now(request: Request) -> AppState:
    state: AppState = request.app.state.framepack
    return state


async def get_state(request: Request) -> AppState:
    return get_state_now(request)


async def get_store(request: Request) -> JobStore:
    state: AppState = request.app.state.framepack
    return state.store


StateDep = Annotated[AppState, Depends(get_state)]
StoreDep = Annotated[JobStore, Depends(get_store)]
