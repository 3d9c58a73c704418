"""Live progress: server-sent events from the job event log, latent previews, partial video,
thumbnails."""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from PIL import Image

from framepack_api.api.auth import CallerDep
from framepack_api.api.contract import errors
from framepack_api.api.deps import AppState, StateDep
from framepack_api.api.downloads import stored_file
from framepack_api.api.views import require_files
from framepack_api.errors import JobNotFound
from framepack_api.jobs.events import Event, last_event_id, read_events
from framepack_api.jobs.schema import JobStatus

router = APIRouter(tags=["live progress"])

POLL_SECONDS = 0.2  # the shared reader's interval while push is not live
# A job stream waiting for more looks this often whether its job ended without a terminal event it
# could still read (the log pruned, the row deleted): the only query an idle stream makes.
END_CHECK_SECONDS = 60.0
THUMBNAIL_SIDE = 320
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


Decorate = Callable[[dict[str, Any]], dict[str, Any]]


def _format(event: Event, decorate: Decorate | None = None) -> str:
    fields = {**event.data, "event_id": event.id, "kind": event.kind, "time": event.created_at}
    data = json.dumps(decorate(fields) if decorate else fields)
    return f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n"


def resume_point(last_event_id_header: str | None) -> int:
    if not last_event_id_header:
        return 0
    try:
        return max(0, int(last_event_id_header))
    except ValueError:
        raise HTTPException(422, detail=[{"loc": ["header", "Last-Event-ID"], "msg": "must be an event id (an integer)",
                                          "type": "int_parsing"}]) from None


async def event_stream(request: Request, state: AppState, after: int, job_id: str | None,
                       owner: str | None, decorate: Decorate | None = None) -> AsyncIterator[str]:
    """The SSE text of the event log from ``after`` on; ``decorate`` may add fields to each event's data
    (the FramePack-FastAPI route adds its field names). Events come from the process's one shared
    reader (api/event_hub.py); a stream that waits costs no query."""
    keepalive = state.settings.sse_keepalive_seconds
    last_sent = time.monotonic()
    yield "retry: 2000\n\n"
    async with state.events.subscribe(after, job_id, owner) as sub:
        next_end_check = 0.0 if job_id is not None else math.inf  # once caught up, then now and then
        while True:
            events = await sub.next(timeout=max(0.0, keepalive - (time.monotonic() - last_sent)))
            for event in events:
                last_sent = time.monotonic()
                yield _format(event, decorate)
                if job_id is not None and event.is_terminal:
                    return
            if sub.after < sub.history_until:
                continue  # still reading its history
            if time.monotonic() >= next_end_check:
                if await _ended_without_more(state, job_id, owner, sub.after):
                    # Resumed after the terminal event, or the log was pruned: nothing more will come.
                    return
                next_end_check = time.monotonic() + END_CHECK_SECONDS
            if not events and time.monotonic() - last_sent >= keepalive:
                if await request.is_disconnected():
                    return
                yield ": keep-alive\n\n"
                last_sent = time.monotonic()


async def _ended_without_more(state: AppState, job_id: str | None, owner: str | None, after: int) -> bool:
    assert job_id is not None
    try:
        job = await run_in_threadpool(state.store.get, job_id, owner)
    except JobNotFound:
        return True  # deleted (retention) while streamed
    return job.status.is_terminal and not await run_in_threadpool(
        read_events, state.engine, after_id=after, job_id=job_id)


@router.get("/events/{job_id}", summary="Server-sent events of one job", responses=errors(404),
            response_description="text/event-stream: status, progress, preview, then completed / failed / "
                                 "cancelled, after which the stream closes. Resume with Last-Event-ID.")
async def job_events(
    job_id: str, request: Request, state: StateDep, caller: CallerDep,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    await run_in_threadpool(state.store.get, job_id, caller.scope)  # 404 before the stream starts
    after = resume_point(last_event_id_header)
    return StreamingResponse(event_stream(request, state, after, job_id, caller.scope), media_type="text/event-stream",
                             headers=SSE_HEADERS)


@router.get("/events", summary="Server-sent events of every job the caller may see (for dashboards)")
async def all_events(
    request: Request, state: StateDep, caller: CallerDep,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    # A new dashboard starts from now; one that reconnects resumes where it was.
    after = resume_point(last_event_id_header) if last_event_id_header else \
        await run_in_threadpool(last_event_id, state.engine)
    return StreamingResponse(event_stream(request, state, after, None, caller.scope), media_type="text/event-stream",
                             headers=SSE_HEADERS)


@router.get("/preview/{job_id}", summary="The newest latent preview (JPEG)",
            responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "Unknown job, or no preview yet"}})
def preview(job_id: str, request: Request, state: StateDep, caller: CallerDep) -> Response:
    job = state.store.get(job_id, caller.scope)
    if not job.preview or state.storage.size(job.preview) is None:
        raise HTTPException(404, detail=f"job {job_id} has no preview yet (status {job.status.value})")
    return stored_file(state, request, job.preview, "image/jpeg", no_store=True)


@router.get("/preview/{job_id}/video", summary="The video so far (MP4), written after each section",
            responses={200: {"content": {"video/mp4": {}}},
                       404: {"description": "Unknown job, or no section finished yet"}})
def partial_video(job_id: str, request: Request, state: StateDep, caller: CallerDep) -> Response:
    job = state.store.get(job_id, caller.scope)
    key = f"previews/{job_id}/partial.mp4"
    if state.storage.size(key) is None:
        raise HTTPException(404, detail=f"job {job_id} has no finished section yet (status {job.status.value})")
    return stored_file(state, request, key, "video/mp4", no_store=True)


@router.get("/thumbnail/{job_id}", summary="The input image while waiting or running; a frame of the "
            "result once completed", responses={200: {"content": {"image/jpeg": {}}}, **errors(404, 410)})
def thumbnail(job_id: str, request: Request, state: StateDep, caller: CallerDep) -> Response:
    job = state.store.get(job_id, caller.scope)
    require_files(job)
    if job.status is JobStatus.completed and job.result and job.result.get("thumbnail"):
        return stored_file(state, request, job.result["thumbnail"], "image/jpeg")
    source = next(iter(job.inputs.values()), None)
    if source is None:
        raise HTTPException(404, detail=f"job {job_id} has no image to show")
    with Image.open(io.BytesIO(state.storage.read_bytes(source))) as img:
        small = img.convert("RGB")
        small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=85)
    return Response(out.getvalue(), media_type="image/jpeg")
