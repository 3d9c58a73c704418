"""create_app(settings): the FastAPI app, its lifespan, routers, and the one error-to-HTTP map."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from framepack_api import __version__
from framepack_api.api.auth import install_auth
from framepack_api.api.contract import install_contract, is_openai_path
from framepack_api.api.deps import AppState
from framepack_api.api.event_hub import EventHub
from framepack_api.api.openai_errors import openai_error_response, unrouted_error
from framepack_api.api.request_guard import RequestGuard
from framepack_api.api.routes import (
    compat,
    images,
    metrics,
    native,
    openai_extend,
    openai_videos,
    progress,
    readiness,
    training,
)
from framepack_api.errors import (
    Conflict,
    FilesExpired,
    InsufficientStorage,
    InvalidInput,
    JobNotFound,
    JobNotReady,
    TooManyJobs,
    Unavailable,
)
from framepack_api.hardware import TINY_WARNING, default_resolution, effective_model
from framepack_api.jobs import rank
from framepack_api.jobs.db import create_engine, upgrade, write_tx
from framepack_api.jobs.notify import create_listener, is_live
from framepack_api.jobs.retention import Retention, discard_dead_attempts, retention_policy, sweep_work_dirs
from framepack_api.jobs.scheduling import scheduling_options
from framepack_api.jobs.store import JobStore
from framepack_api.settings import Settings, get_settings
from framepack_api.storage import Storage, create_storage
from framepack_api.webhooks import WebhookDispatcher

log = logging.getLogger(__name__)

DESCRIPTION = """
FramePack image-to-video and image generation as a durable job queue.

Submit a job (`POST /generate`), get its id at once, then poll `GET /status/{job_id}` and
download `GET /result/{job_id}`. Jobs live in a database and run in separate worker processes;
an accepted job is never lost.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.resolved_database_url)
        await run_in_threadpool(upgrade, engine)
        model = await run_in_threadpool(effective_model, settings)
        if model == "tiny":
            log.warning(TINY_WARNING)
        store = JobStore(engine, lease_seconds=settings.lease_seconds, max_attempts=settings.max_attempts,
                         **scheduling_options(settings))
        storage = await run_in_threadpool(create_storage, settings)
        listener = await run_in_threadpool(create_listener, engine, settings.push)
        hub = EventHub(engine, poll_seconds=progress.POLL_SECONDS, fallback_seconds=settings.push_fallback_poll_seconds,
                       push_live=lambda: is_live(listener))
        webhooks = WebhookDispatcher(engine, settings)
        app.state.framepack = AppState(
            settings=settings, engine=engine, store=store, storage=storage,
            model=model, default_resolution=default_resolution(settings), events=hub, listener=listener,
        )
        if listener is not None:
            loop = asyncio.get_running_loop()
            listener.on("event", lambda: loop.call_soon_threadsafe(hub.wake))
            listener.on("webhook", lambda: loop.call_soon_threadsafe(webhooks.wake))
        retention = Retention(engine, storage, retention_policy(settings), holder=f"api:{uuid.uuid4().hex}",
                              clock=store.clock)
        background = [
            asyncio.create_task(_reap_forever(store, storage, settings)),
            asyncio.create_task(_retention_forever(retention, settings.retention_interval_seconds)),
            asyncio.create_task(webhooks.run_forever(push_live=lambda: is_live(listener))),
        ]
        try:
            yield
        finally:
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await hub.stop()
            if listener is not None:
                await run_in_threadpool(listener.stop)
            engine.dispose()

    app = FastAPI(title="framepack-api", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.include_router(native.router)
    app.include_router(readiness.router)
    app.include_router(images.router)
    app.include_router(progress.router)
    app.include_router(metrics.router)
    app.include_router(openai_videos.router)  # errors in OpenAI's shape: see api/openai_errors.py
    app.include_router(openai_extend.router)  # extensions and remix, after /videos/{video_id}'s GET
    app.include_router(training.router)
    app.include_router(compat.router)  # FramePack-FastAPI's paths (docs/API.md)
    # Inside auth: a client without credentials gets its 401 before any body is read.
    app.add_middleware(RequestGuard, max_body_bytes=settings.body_limit, refuse=invalid_input_response,
                       router=app.router)
    install_auth(app, settings)
    _install_error_handlers(app)
    install_contract(app, settings)  # the status codes, error bodies and security schemes in /openapi.json
    _mount_ui(app, settings)
    return app


def _mount_ui(app: FastAPI, settings: Settings) -> None:
    """The Gradio page at /ui when the optional `ui` extra is installed (docs/UI.md). It is a client of
    this server's HTTP API over loopback, like any other client."""
    if not settings.ui_enabled or importlib.util.find_spec("gradio") is None:
        return
    from framepack_api.ui.app import mount_ui

    mount_ui(app, settings)


async def _reap_forever(store: JobStore, storage: Storage, settings: Settings) -> None:
    """Jobs whose worker died go back to the queue even when no worker is polling, and the work
    directories their killed attempts left behind are removed. Between rounds it sleeps until the
    earliest lease can run out (at least reap_interval_seconds; lease_seconds when nothing runs, as a
    job claimed meanwhile cannot expire sooner), so an idle server does not wake for it."""
    while True:
        wait = settings.reap_interval_seconds
        try:
            reaped = await run_in_threadpool(store.reap)
            if reaped:
                log.warning("requeued or failed %d job(s) with expired leases: %s", len(reaped), reaped)
                dropped = await run_in_threadpool(discard_dead_attempts, store.engine, storage, reaped)
                if dropped:
                    log.info("removed unpublished results of dead attempts: %s", dropped)
            removed = await run_in_threadpool(sweep_work_dirs, store.engine, storage,
                                              min_age_seconds=settings.lease_seconds)
            if removed:
                log.info("removed work directories of dead attempts: %s", removed)
            # PostgreSQL's queue blocks move only when no writer is in flight (jobs/rank_pg.py): a
            # steady stream of concurrent submits can outgrow them; this catches up (a no-op look
            # at the block totals when nothing is due, and always on SQLite).
            await run_in_threadpool(_rebalance_queue, store)
            expiry = await run_in_threadpool(store.next_lease_expiry)
            until = settings.lease_seconds if expiry is None else expiry - store.clock()
            wait = max(settings.reap_interval_seconds, min(until, settings.lease_seconds))
        except Exception:  # the database may be briefly unreachable; try again next round
            log.exception("reaper round failed")
        await asyncio.sleep(wait)


def _rebalance_queue(store: JobStore) -> None:
    with write_tx(store.engine) as conn:
        rank.rebalance(conn)


async def _retention_forever(retention: Retention, interval: float) -> None:
    """Every API process tries; the lease row lets one of them run each round."""
    while True:
        try:
            report = await run_in_threadpool(retention.run_round)
            if report.ran and (report.files_removed or report.jobs_deleted or report.events_deleted):
                log.info("retention: files of %d job(s) removed, %d job(s) deleted, %d event(s) deleted",
                         len(report.files_removed), len(report.jobs_deleted), report.events_deleted)
        except Exception:  # a database blip: the next round catches up
            log.exception("retention round failed")
        await asyncio.sleep(interval)


def invalid_input_response(path: str, exc: InvalidInput) -> JSONResponse:
    """422 (413 when too large) naming the field; in OpenAI's shape on /v1 routes."""
    if is_openai_path(path):
        return openai_error_response(exc)
    field = [] if exc.field == exc.location else exc.field.split(".")
    body = {"detail": [{"loc": [exc.location, *field], "msg": exc.problem, "type": "value_error"}]}
    return JSONResponse(body, status_code=413 if exc.too_large else 422)


def validation_details(errors: Sequence[Any], prefix: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """pydantic's errors without the offending input and context: those may hold a NaN or a lone
    surrogate, which cannot be written as JSON, and need not be echoed back to the client."""
    return [{"type": e.get("type", "value_error"), "loc": [*prefix, *e.get("loc", ())], "msg": e.get("msg", "")}
            for e in errors]


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        # Errors inside /v1 handlers are already in OpenAI's shape (OpenAIRoute); these are the ones
        # the router raises itself: a /v1 path or method that no route serves.
        if is_openai_path(request.url.path):
            return openai_error_response(unrouted_error(request.method, request.url.path, exc))
        return await http_exception_handler(request, exc)

    @app.exception_handler(InvalidInput)
    async def _invalid(request: Request, exc: InvalidInput) -> JSONResponse:
        return invalid_input_response(request.url.path, exc)

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_details(exc.errors())}, status_code=422)

    @app.exception_handler(ValidationError)
    async def _params_invalid(_: Request, exc: ValidationError) -> JSONResponse:
        # A parameter model checked inside a route (not by FastAPI): its fields are body fields.
        return JSONResponse({"detail": validation_details(exc.errors(include_url=False), ("body",))},
                            status_code=422)

    @app.exception_handler(TooManyJobs)
    async def _too_many(_: Request, exc: TooManyJobs) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=429, headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(JobNotFound)
    async def _not_found(_: Request, exc: JobNotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(JobNotReady)
    async def _not_ready(_: Request, exc: JobNotReady) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "status": exc.status}, status_code=409)

    @app.exception_handler(Conflict)
    async def _conflict(_: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(InsufficientStorage)
    async def _no_space(_: Request, exc: InsufficientStorage) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=507)

    @app.exception_handler(FilesExpired)
    async def _expired(_: Request, exc: FilesExpired) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=410)

    @app.exception_handler(Unavailable)
    async def _unavailable(_: Request, exc: Unavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)
