"""GET /ready: readiness, distinct from /health (liveness and an overview).

Ready means a job submitted now would start: the database is reachable, and for each job type asked
about a live worker (model loaded, idle or busy) takes it. Every worker takes every job type the server
accepts (one queue, one loaded model that serves video and image jobs); `remote_video` jobs exist only
when a remote backend is set. A worker takes no job while the disk is below its floor, so that is a
reason too.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError

from framepack_api.api.deps import StateDep
from framepack_api.disk import measure
from framepack_api.jobs.db import ping
from framepack_api.params import JobType
from framepack_api.settings import Settings

router = APIRouter(tags=["service"])


class Readiness(BaseModel):
    ready: bool = Field(description="true (200): send jobs here; false (503): not now, see reasons.")
    reasons: list[str] = Field(default_factory=list)
    database: bool
    job_types: dict[str, int] = Field(description="Each job type checked, and how many live workers take it.")


def accepted_job_types(settings: Settings) -> list[JobType]:
    remote = "remote" in (settings.backend, settings.training_backend)
    return [t for t in JobType if t != JobType.remote_video or remote]


@router.get("/ready", response_model=Readiness,
            summary="Readiness: database reachable and a live worker for each job type",
            responses={503: {"model": Readiness, "description": "Not ready; `reasons` says why"}})
def ready(state: StateDep,
          job_type: Annotated[JobType | None, Query(description="Check only this job type.")] = None,
          ) -> JSONResponse:
    settings = state.settings
    types = [job_type] if job_type is not None else accepted_job_types(settings)
    reasons: list[str] = []
    live = 0
    db_ok = ping(state.engine)
    if db_ok:
        try:
            live = sum(w["state"] in ("idle", "busy") for w in state.store.live_workers(settings.lease_seconds))
        except SQLAlchemyError:  # lost between the ping and the read
            db_ok = False
    if not db_ok:
        reasons.append("database unreachable")
    per_type = {t.value: live for t in types}
    if job_type is not None and job_type not in accepted_job_types(settings):
        per_type[job_type.value] = 0
        reasons.append(f"job type {job_type.value} is not accepted here (no remote backend is set)")
    elif db_ok and not live:
        reasons.append("no live worker for " + ", ".join(per_type))
    space = measure(state.storage.root, settings.min_free_disk_mb)
    if space.low:
        reasons.append(space.reason())
    body = Readiness(ready=not reasons, reasons=reasons, database=db_ok, job_types=per_type)
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)
