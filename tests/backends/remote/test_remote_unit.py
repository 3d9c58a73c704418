"""The remote backend against a scripted server (httpx.MockTransport): the rules that a live
server cannot be made to break on cue: timeouts on create, poll intervals, resuming."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from framepack_api.backends.base import Progress, RunContext
from framepack_api.backends.remote import RemoteBackend, RemoteError, RoutingBackend
from framepack_api.errors import JobCancelled
from framepack_api.media.video import write_mp4
from framepack_api.params import JobType
from framepack_api.settings import Settings

PARAMS = {"prompt": "p", "model": "framepack", "seconds": "4", "size": "1280x720", "extra": {"steps": 2}}


@pytest.fixture
def mp4_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "made.mp4"
    write_mp4(np.zeros((5, 32, 48, 3), dtype=np.uint8), path)
    return path.read_bytes()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, remote_base_url="http://remote.test/v1", remote_api_key="sk-remote",
                    _env_file=None)  # type: ignore[call-arg]


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "inputs" / "job-1"
    directory.mkdir(parents=True)
    (directory / "remote.json").write_text(json.dumps({"job_id": "job-1"}))
    return directory


class Script:
    """Answers requests from a handler and records them."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    def calls(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]


def run(settings: Settings, script: Script, job_dir: Path, tmp_path: Path, *,
        cancelled: Callable[[], bool] = lambda: False) -> tuple[Any, list[float], list[Progress]]:
    sleeps: list[float] = []
    progress: list[Progress] = []
    backend = RemoteBackend(settings, transport=httpx.MockTransport(script), sleep=sleeps.append)
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    ctx = RunContext(workdir=workdir, progress=progress.append, cancelled=cancelled)
    out = backend.run(JobType.remote_video, PARAMS, {"remote": job_dir / "remote.json"}, ctx)
    return out, sleeps, progress


def video(status: str, progress: int = 0, **extra: Any) -> dict[str, Any]:
    return {"id": "r1", "object": "video", "status": status, "progress": progress, "model": "framepack",
            "size": "48x32", "seconds": "4", "created_at": 1, **extra}


def test_polls_as_told_and_downloads(settings: Settings, job_dir: Path, tmp_path: Path, mp4_bytes: bytes) -> None:
    answers = iter([(video("queued"), "250"), (video("in_progress", 50), "1500"), (video("completed", 100), None)])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, json=video("queued"))
        if request.url.path.endswith("/content"):
            return httpx.Response(200, content=mp4_bytes)
        body, after = next(answers)
        return httpx.Response(200, json=body, headers={"openai-poll-after-ms": after} if after else {})

    script = Script(handler)
    out, sleeps, progress = run(settings, script, job_dir, tmp_path)
    create = script.calls("POST", "/v1/videos")[0]
    assert create.headers["authorization"] == "Bearer sk-remote"
    assert create.headers["idempotency-key"] == "framepack-api-job-1"
    assert json.loads(create.content) == {"prompt": "p", "model": "framepack", "seconds": "4",
                                          "size": "1280x720", "steps": 2}
    assert sum(sleeps[:2]) == pytest.approx(0.25) and sum(sleeps[2:]) == pytest.approx(1.5)
    assert [p.percent for p in progress] == [0, 50, 100]
    assert out.info["remote_id"] == "r1" and (out.info["width"], out.info["height"]) == (48, 32)
    assert out.files["video"].read_bytes() == mp4_bytes and out.files["thumbnail"].stat().st_size > 0
    assert json.loads((job_dir / "remote.json").read_text())["remote_id"] == "r1"


def test_a_create_that_timed_out_is_never_resent(settings: Settings, job_dir: Path, tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    script = Script(handler)
    with pytest.raises(RemoteError, match="not resubmitting"):
        run(settings, script, job_dir, tmp_path)
    with pytest.raises(RemoteError, match="outcome is unknown"):
        run(settings, script, job_dir, tmp_path)  # the job's next attempt
    assert len(script.calls("POST", "/v1/videos")) == 1


def test_a_create_that_never_connected_may_be_tried_again(settings: Settings, job_dir: Path,
                                                           tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    script = Script(handler)
    for _ in range(2):
        with pytest.raises(RemoteError, match="cannot reach"):
            run(settings, script, job_dir, tmp_path)
    assert len(script.calls("POST", "/v1/videos")) == 2


def test_remote_failure_and_refusal_become_job_errors(settings: Settings, job_dir: Path, tmp_path: Path) -> None:
    failed = video("failed", error={"code": "moderation_blocked", "message": "not allowed"})
    script = Script(lambda r: httpx.Response(200, json=video("queued") if r.method == "POST" else failed))
    with pytest.raises(RemoteError, match=r"\[moderation_blocked\] not allowed"):
        run(settings, script, job_dir, tmp_path)

    (job_dir / "remote.json").write_text(json.dumps({"job_id": "job-1"}))
    refusal = {"error": {"message": "bad size", "type": "invalid_request_error", "param": "size",
                         "code": "invalid_value"}}
    with pytest.raises(RemoteError, match=r"refused the video: HTTP 400 \[invalid_value\] bad size"):
        run(settings, Script(lambda r: httpx.Response(400, json=refusal)), job_dir, tmp_path)
    assert "creating" not in json.loads((job_dir / "remote.json").read_text())  # may be tried again


def test_transient_poll_errors_are_retried(settings: Settings, job_dir: Path, tmp_path: Path,
                                           mp4_bytes: bytes) -> None:
    (job_dir / "remote.json").write_text(json.dumps({"job_id": "job-1", "remote_id": "r1"}))
    answers = iter([httpx.Response(503), httpx.Response(429), httpx.Response(200, json=video("completed", 100))])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/content"):
            return httpx.Response(200, content=mp4_bytes)
        return next(answers)

    script = Script(handler)
    out, _, _ = run(settings, script, job_dir, tmp_path)
    assert out.info["remote_id"] == "r1"
    assert script.calls("POST", "/v1/videos") == []  # resumed the video an earlier attempt made


def test_cancel_deletes_the_remote_video(settings: Settings, job_dir: Path, tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return httpx.Response(200, json={"id": "r1", "object": "video.deleted", "deleted": True})
        return httpx.Response(200, json=video("in_progress", 10), headers={"openai-poll-after-ms": "1000"})

    polls = 0

    def cancelled() -> bool:
        nonlocal polls
        polls += 1
        return polls > 3

    script = Script(handler)
    with pytest.raises(JobCancelled):
        run(settings, script, job_dir, tmp_path, cancelled=cancelled)
    assert len(script.calls("DELETE", "/v1/videos/r1")) == 1


def test_routing_backend_loads_framepack_only_when_needed(settings: Settings) -> None:
    loaded: list[Settings] = []

    class FakeLocal:
        preset, is_tiny = "tiny", True

        def __init__(self, s: Settings) -> None:
            loaded.append(s)

        def run(self, *args: Any) -> str:
            return "ran locally"

    forwarding = settings.model_copy(update={"backend": "remote", "training_backend": "remote"})
    router = RoutingBackend(forwarding, RemoteBackend(forwarding), FakeLocal)  # type: ignore[arg-type]
    assert loaded == [] and router.preset == "remote"
    assert router.run(JobType.video, {}, {}, RunContext(workdir=Path("."))) == "ran locally"  # type: ignore[comparison-overlap]
    assert len(loaded) == 1 and router.preset == "tiny"
    mixed = settings.model_copy(update={"backend": "framepack", "training_backend": "remote"})
    RoutingBackend(mixed, RemoteBackend(mixed), FakeLocal)  # type: ignore[arg-type]
    assert len(loaded) == 2  # local jobs are the default here: loaded at start


def test_remote_backend_settings_need_a_url() -> None:
    with pytest.raises(ValueError, match="remote_base_url"):
        Settings(training_backend="remote", _env_file=None)  # type: ignore[call-arg]
    assert Settings(backend="remote", remote_base_url="http://x/v1", _env_file=None).backend == "remote"  # type: ignore[call-arg]
