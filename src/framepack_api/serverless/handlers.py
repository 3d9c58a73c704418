"""Serverless entry points over the worker's own generation code.

``lambda_handler`` (AWS Lambda, direct or behind API Gateway) and ``handler`` (RunPod-style jobs) both
end in ``invoke``: validate, load the model once per process, run ``generate_video`` — the function
the job worker runs — in a temporary directory, then answer with the MP4 as base64 or upload it to
``output_url``. The temporary directory is removed on every path out.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from framepack_api.backends.base import JobOutput, Progress, RunContext
from framepack_api.backends.framepack.loader import LoadedModel, load_model
from framepack_api.backends.framepack.video import generate_video
from framepack_api.errors import InvalidInput
from framepack_api.media.video import read_mp4_info
from framepack_api.net_guard import NetGuard, blocked, guarded_client
from framepack_api.serverless.events import (
    Shape,
    VideoRequest,
    detect_shape,
    error_body,
    parse_request,
    request_data,
    response_bytes,
    wrap,
)
from framepack_api.settings import Settings

log = logging.getLogger(__name__)

ProgressFn = Callable[[Progress], None]
STAGES = ("encode", "sample", "decode", "write", "other")


class ServerlessConfig(BaseSettings):
    """Knobs of the serverless front door only (``FRAMEPACK_API_SERVERLESS_*``); read per invocation."""

    model_config = SettingsConfigDict(env_prefix="FRAMEPACK_API_SERVERLESS_", env_file=".env", extra="ignore")

    # Lambda refuses a synchronous response over 6 MB; the whole serialised response must fit.
    max_response_bytes: int = Field(default=6 * 1024 * 1024, ge=1)
    # Parent of the per-invocation temporary directories; None = the system's (/tmp on Lambda).
    tmp_dir: Path | None = Field(default=None)
    upload_timeout_s: float = Field(default=300.0, gt=0)
    # Least time between two RunPod progress updates (each is an HTTP call).
    progress_interval_s: float = Field(default=2.0, ge=0)
    # Timeout of the GET of an image given by URL (input_image_url, end_image_url).
    fetch_timeout_s: float = Field(default=60.0, gt=0)


class UploadFailed(Exception):
    pass


class InvocationFailed(Exception):
    """A failed direct Lambda invocation. Raised, not returned, so that Lambda marks the invocation
    ``FunctionError`` (retries, dead-letter queues and Step Functions ``Catch`` depend on it). Lambda
    reports the class name as ``errorType`` and ``str(exc)`` — the error body as JSON — as
    ``errorMessage``; ``body`` holds the same dict for in-process callers."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(json.dumps(body, separators=(",", ":")))
        self.body = body
        self.status = int(body.get("status", 500))


# One subclass per error ``type``, so that a Step Functions Catch or a retry policy can tell bad input
# (never worth retrying) from a failure of the function.
class InvalidInputError(InvocationFailed):
    pass


class ResponseTooLargeError(InvocationFailed):
    pass


class UploadFailedError(InvocationFailed):
    pass


class InternalError(InvocationFailed):
    pass


_ERROR_TYPES: dict[str, type[InvocationFailed]] = {
    "invalid_input": InvalidInputError,
    "response_too_large": ResponseTooLargeError,
    "upload_failed": UploadFailedError,
    "internal_error": InternalError,
}


# --- the model: loaded on first use, kept for every warm invocation of this process ---------------

_lock = threading.Lock()
_settings: Settings | None = None
_model: LoadedModel | None = None
_loads = 0


def current_settings() -> Settings:
    global _settings
    with _lock:
        if _settings is None:
            _settings = Settings()
        return _settings


def get_models() -> tuple[LoadedModel, float]:
    """The process's model and the seconds this call spent loading it (0.0 when warm)."""
    global _model, _loads
    settings = current_settings()
    with _lock:
        if _model is not None:
            return _model, 0.0
        started = time.perf_counter()
        _model = load_model(settings)
        _loads += 1
        seconds = time.perf_counter() - started
    log.info("serverless: loaded model %s in %.2f s (cold start)", _model.preset, seconds)
    return _model, seconds


def warm_up() -> float:
    """Load the model now (e.g. before a RunPod worker takes jobs); returns the seconds it took."""
    return get_models()[1]


def model_loads() -> int:
    """How many times this process has loaded the model (1 after any number of warm invocations)."""
    return _loads


def reset_models() -> None:
    """Forget the model and settings, so the next invocation reads the environment and loads again."""
    global _model, _settings
    with _lock:
        _model = None
        _settings = None


# --- generation ----------------------------------------------------------------------------------

def run_generation(request: VideoRequest, model: LoadedModel, workdir: Path,
                   progress: ProgressFn | None = None) -> JobOutput:
    """One video into ``workdir``, by the worker's ``generate_video`` (no second copy of the pipeline)."""
    ctx = RunContext(workdir=workdir, progress=progress or (lambda _p: None))
    # Nobody watches a serverless call while it runs: no partial videos (their cost grows with length).
    return generate_video(model, request.params, request.image, request.end_image, workdir, ctx,
                          preview_every=0, partial_videos=False)


def generate_video_sync(params: VideoRequest | Mapping[str, Any], models: LoadedModel | None = None, *,
                        out_dir: Path | None = None) -> Path:
    """Generate one video and return the MP4's path (seed 003's function).

    ``params`` is a parsed ``VideoRequest`` or the event's parameters (``input_image_b64``, ``prompt``,
    ...). ``models`` defaults to the process's cached model. The MP4 goes into ``out_dir``, or a fresh
    temporary directory that the caller removes (``shutil.rmtree(path.parent)``).
    """
    request = params if isinstance(params, VideoRequest) else parse_request(params, current_settings())
    if models is None:
        models = get_models()[0]
    workdir = out_dir if out_dir is not None else Path(tempfile.mkdtemp(prefix="framepack-video-"))
    return run_generation(request, models, workdir).files["video"]


# --- one invocation ------------------------------------------------------------------------------

def invoke(event: Any, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Answer one event of any shape; never raises for bad input or a failed run."""
    shape = detect_shape(event)
    try:
        return _invoke(shape, request_data(event, shape), progress)
    except InvalidInput as exc:
        log.info("serverless: bad input: %s", exc)
        return wrap(shape, 400, error_body(400, "invalid_input", str(exc), field=exc.field))
    except UploadFailed as exc:
        error_id = uuid.uuid4().hex[:16]
        log.error("serverless: upload failed (error_id=%s): %s", error_id, exc)
        return wrap(shape, 502, error_body(502, "upload_failed", str(exc), field="output_url",
                                           error_id=error_id))
    except Exception:
        # The traceback goes to the log only; the caller gets an id to find it there.
        error_id = uuid.uuid4().hex[:16]
        log.exception("serverless: invocation failed (error_id=%s)", error_id)
        return wrap(shape, 500, error_body(500, "internal_error",
                                           f"video generation failed; see the log for error_id {error_id}",
                                           error_id=error_id))


def _invoke(shape: Shape, data: Any, progress: ProgressFn | None) -> dict[str, Any]:
    started = time.perf_counter()
    config = ServerlessConfig()
    request = parse_request(data, current_settings(), fetch_timeout=config.fetch_timeout_s)
    model, load_seconds = get_models()
    if config.tmp_dir is not None:
        config.tmp_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="framepack-serverless-", dir=config.tmp_dir) as tmp:
        generate_started = time.perf_counter()
        output = run_generation(request, model, Path(tmp), progress)
        generate_seconds = time.perf_counter() - generate_started
        video_path = output.files["video"]
        body = _result_body(output, video_path, load_seconds, generate_seconds)
        video = video_path.read_bytes()
    body["video_bytes"] = len(video)
    if request.output_url is not None:
        upload_started = time.perf_counter()
        _upload(request.output_url, video, config.upload_timeout_s,
                NetGuard.from_entries(current_settings().outbound_allow))
        body["timings"]["upload"] = round(time.perf_counter() - upload_started, 4)
        # The presigned query authorises a PUT only, and is a credential: answer with the bare object URL.
        body["video_url"] = _without_query(request.output_url)
        body["timings"]["total"] = round(time.perf_counter() - started, 4)
        return wrap(shape, 200, body)
    body["video_b64"] = base64.b64encode(video).decode("ascii")
    body["timings"]["total"] = round(time.perf_counter() - started, 4)
    response = wrap(shape, 200, body)
    size = response_bytes(response)
    if size > config.max_response_bytes:
        return wrap(shape, 413, _too_large_body(len(video), size, config.max_response_bytes))
    return response


def _result_body(output: JobOutput, video_path: Path, load_seconds: float,
                 generate_seconds: float) -> dict[str, Any]:
    info = output.info
    given = info.get("timings") or {}
    timings: dict[str, float] = {"load": round(load_seconds, 4)}
    if any(stage in given for stage in STAGES):
        timings.update({stage: float(given.get(stage, 0.0)) for stage in STAGES})
    else:  # a generate_video without stage timings: all we know is its wall time
        timings["generate"] = round(generate_seconds, 4)
    frames, fps = info.get("frames"), info.get("fps")
    if frames is None or fps is None:  # count them from the file rather than guess
        probed = read_mp4_info(video_path)
        frames, fps = probed["frames"], probed["fps"]
    body: dict[str, Any] = {
        "seed": output.seed,
        "frames": int(frames),
        "fps": fps,
        "duration_s": round(int(frames) / float(fps), 3) if fps else 0.0,
        "width": info.get("width"),
        "height": info.get("height"),
        "model": info.get("model"),
        "timings": timings,
    }
    if info.get("model") == "tiny":
        body["warning"] = "tiny model: random weights, the video is noise"
    return body


def _too_large_body(video_bytes: int, response_size: int, limit: int) -> dict[str, Any]:
    return error_body(
        413, "response_too_large",
        f"the MP4 is {video_bytes} bytes, {response_size} bytes as a base64 response; the response limit "
        f"is {limit} bytes (Lambda allows 6 MB). Pass output_url (a presigned PUT URL) to receive the video "
        "by upload, or make it smaller: shorter video_length, lower resolution, higher mp4_crf.",
        field="output_url",
    )


def _upload(url: str, video: bytes, timeout: float, guard: NetGuard) -> None:
    """PUT the MP4. The target's answer body is never read into the caller's response: the target
    may be a service the caller could not otherwise reach."""
    try:
        with guarded_client(guard, timeout=timeout) as http:
            response = http.put(url, content=video, headers={"Content-Type": "video/mp4"})
    except httpx.HTTPError as exc:
        refusal = blocked(exc)
        if refusal is not None:
            raise UploadFailed(f"output_url refused: {refusal}") from None
        raise UploadFailed(f"PUT to output_url failed: {exc.__class__.__name__}") from None
    if not response.is_success:
        raise UploadFailed(f"PUT to output_url answered HTTP {response.status_code}")


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


# --- platform entry points -----------------------------------------------------------------------

def lambda_handler(event: Any, context: Any = None) -> dict[str, Any]:
    """AWS Lambda: a direct invocation, or an API Gateway REST (v1) / HTTP API (v2) proxy event.

    A proxy event always gets a response (API Gateway turns it into the HTTP status); a failed direct
    invocation raises an ``InvocationFailed`` subclass carrying the error body.
    """
    request_id = getattr(context, "aws_request_id", None)
    if request_id:
        log.info("serverless: lambda request %s", request_id)
    response = invoke(event)
    if detect_shape(event) is Shape.direct and "error" in response:
        raise _ERROR_TYPES.get(str(response.get("type")), InvocationFailed)(response)
    return response


def handler(job: Mapping[str, Any]) -> dict[str, Any]:
    """RunPod-style: ``job["input"]`` holds the parameters; the output dict is the direct-invocation body."""
    progress = _runpod_progress(job, ServerlessConfig().progress_interval_s)
    return invoke(job.get("input") or {}, progress=progress)


def _runpod_progress(job: Mapping[str, Any], interval: float) -> ProgressFn | None:
    """Progress updates through ``runpod.serverless.progress_update`` when runpod is installed."""
    try:
        import runpod.serverless as rp  # optional extra: framepack-api[runpod]
    except ImportError:
        return None
    update = getattr(rp, "progress_update", None)
    if update is None:
        return None
    last = -float("inf")

    def report(p: Progress) -> None:
        nonlocal last
        now = time.monotonic()
        finished = p.section == p.total_sections and p.step == p.total_steps
        # Each update is an HTTP call in its own thread: send one per interval, and always the last.
        if now - last < interval and not finished:
            return
        last = now
        update(dict(job), {"percent": p.percent, "section": p.section, "total_sections": p.total_sections,
                           "step": p.step, "total_steps": p.total_steps, "message": p.message})

    return report


def progress_item(p: Progress) -> dict[str, Any]:
    return {"type": "progress", "percent": p.percent, "section": p.section,
            "total_sections": p.total_sections, "step": p.step, "total_steps": p.total_steps,
            "message": p.message}


def stream_handler(job: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """RunPod generator handler: yields a ``{"type": "progress", ...}`` item each time the progress
    changes, then the output body (the same dict ``handler`` returns). Run it with
    ``return_aggregate_stream`` so that ``/run`` + ``/status`` also get every item as a list."""
    items: queue.Queue[dict[str, Any] | None] = queue.Queue()
    outcome: list[dict[str, Any]] = []

    def run() -> None:
        try:
            outcome.append(invoke(job.get("input") or {}, progress=lambda p: items.put(progress_item(p))))
        finally:
            items.put(None)  # invoke never raises, but the consumer must never wait forever

    # Generation runs in a thread so that this generator hands each item out while it is produced.
    worker = threading.Thread(target=run, name="framepack-serverless-stream", daemon=True)
    worker.start()
    last: dict[str, Any] | None = None
    while (item := items.get()) is not None:
        if item != last:
            last = item
            yield item
    worker.join()
    yield outcome[0] if outcome else error_body(500, "internal_error", "the generation thread ended without output")


def start_runpod_worker(*, stream: bool = False) -> None:
    """Load the model, then serve RunPod jobs forever (``python -m framepack_api.serverless --runpod``);
    with ``stream`` the generator handler streams progress items before the output."""
    import runpod.serverless  # optional extra: framepack-api[runpod]

    warm_up()  # the first job should not pay for the load
    if stream:
        runpod.serverless.start({"handler": stream_handler, "return_aggregate_stream": True})
    else:
        runpod.serverless.start({"handler": handler})
