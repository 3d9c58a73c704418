"""lambda_handler and the RunPod-style handler in this process, on the real tiny pipeline."""

from __future__ import annotations

import base64
import json
import logging
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from framepack_api.backends.framepack import video as video_module
from framepack_api.media.video import read_mp4_info
from framepack_api.serverless import (
    InvocationFailed,
    generate_video_sync,
    get_models,
    handler,
    handlers,
    lambda_handler,
    model_loads,
    reset_models,
)
from framepack_api.serverless import __main__ as cli
from serverless.serverless_helpers import (
    EXPECTED_FRAMES,
    PutReceiver,
    ServerlessDirs,
    body_of,
    http_v2_event,
    mp4_frames,
    png_b64,
    rest_v1_event,
)

STAGES = {"load", "encode", "sample", "decode", "write"}


def failed_direct(event: dict[str, Any]) -> dict[str, Any]:
    """A direct invocation that must fail: it raises (Lambda's FunctionError) with the error body."""
    with pytest.raises(InvocationFailed) as raised:
        lambda_handler(event, None)
    assert json.loads(str(raised.value)) == raised.value.body  # Lambda's errorMessage is the body
    return raised.value.body


def leftovers(dirs: ServerlessDirs) -> list[Path]:
    return sorted(dirs.tmp.rglob("*")) if dirs.tmp.exists() else []


@pytest.mark.parametrize("shape", ["direct", "rest_v1", "rest_v1_base64", "http_v2", "http_v2_base64"])
def test_each_event_shape_returns_a_decodable_mp4(params: dict[str, Any], shape: str, tmp_path: Path,
                                                  serverless_env: ServerlessDirs) -> None:
    event: dict[str, Any] = {
        "direct": lambda: dict(params),
        "rest_v1": lambda: rest_v1_event(params),
        "rest_v1_base64": lambda: rest_v1_event(params, base64_body=True),
        "http_v2": lambda: http_v2_event(params),
        "http_v2_base64": lambda: http_v2_event(params, base64_body=True),
    }[shape]()
    response = lambda_handler(event, None)
    if shape == "direct":
        assert "statusCode" not in response
    else:
        assert response["statusCode"] == 200
        assert isinstance(response["body"], str)
    body = body_of(response)
    assert "error" not in body
    assert mp4_frames(base64.b64decode(body["video_b64"]), tmp_path) == EXPECTED_FRAMES
    assert body["frames"] == EXPECTED_FRAMES
    assert body["fps"] == 30
    assert body["duration_s"] == pytest.approx(EXPECTED_FRAMES / 30, abs=1e-3)
    assert body["seed"] == 7
    assert set(body["timings"]) >= STAGES
    assert body["timings"]["sample"] > 0
    assert leftovers(serverless_env) == []


def test_models_load_once_per_process(params: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    reset_models()
    calls: list[int] = []
    real_load = handlers.load_model

    def counting_load(settings: Any) -> Any:
        calls.append(1)
        return real_load(settings)

    monkeypatch.setattr(handlers, "load_model", counting_load)
    loads_before = model_loads()
    cold = lambda_handler(dict(params), None)
    warm = lambda_handler(http_v2_event(params), None)
    assert len(calls) == 1
    assert model_loads() == loads_before + 1
    assert cold["timings"]["load"] > 0
    assert body_of(warm)["timings"]["load"] == 0.0
    assert get_models() == (get_models()[0], 0.0)


def _bad(params: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**params, **changes}


BAD_INPUTS: list[tuple[str, Any, str]] = [
    ("missing image", lambda p: {k: v for k, v in p.items() if k != "input_image_b64"}, "input_image_b64"),
    ("steps 0", lambda p: _bad(p, steps=0), "steps"),
    ("seed not a number", lambda p: _bad(p, seed="abc"), "seed"),
    ("unknown field", lambda p: _bad(p, frobnicate=1), "frobnicate"),
    ("sampling_mode", lambda p: _bad(p, sampling_mode="sideways"), "sampling_mode"),
    ("resolution too big", lambda p: _bad(p, resolution=2048), "resolution"),
    ("image not base64", lambda p: _bad(p, input_image_b64="***"), "input_image_b64"),
    ("image not an image", lambda p: _bad(p, input_image_b64=base64.b64encode(b"hello").decode()),
     "input_image_b64"),
    ("image a number", lambda p: _bad(p, input_image_b64=5), "input_image_b64"),
    ("end image with F1", lambda p: _bad(p, end_image_b64=png_b64(seed=2), sampling_mode="forward"),
     "end_image_b64"),
    ("end image broken", lambda p: _bad(p, end_image_b64="AAAA"), "end_image_b64"),
    ("output_url not http", lambda p: _bad(p, output_url="ftp://x/y"), "output_url"),
    ("has_end_image sent", lambda p: _bad(p, has_end_image=True), "has_end_image"),
    ("extension asked", lambda p: _bad(p, extend_job_id="abc"), "extend_job_id"),
    ("has_input_video sent", lambda p: _bad(p, has_input_video=True), "has_input_video"),
]


@pytest.mark.parametrize(("change", "field"), [(c, f) for _, c, f in BAD_INPUTS],
                         ids=[name for name, _, _ in BAD_INPUTS])
def test_bad_input_is_400_naming_the_field(params: dict[str, Any], change: Any, field: str) -> None:
    loads_before = model_loads()
    response = failed_direct(change(params))
    assert response["status"] == 400
    assert response["type"] == "invalid_input"
    assert response["field"] == field
    assert field in response["error"]
    assert "video_b64" not in response
    assert model_loads() == loads_before  # validation happens before any model work


@pytest.mark.parametrize("build", [rest_v1_event, http_v2_event])
def test_bad_input_in_a_proxy_event_is_status_400(params: dict[str, Any], build: Any) -> None:
    response = lambda_handler(build(_bad(params, steps=0)), None)
    assert response["statusCode"] == 400
    assert body_of(response)["field"] == "steps"
    broken = {**build(params), "body": "{not json"}
    response = lambda_handler(broken, None)
    assert response["statusCode"] == 400
    assert body_of(response)["field"] == "body"


def test_failure_is_500_with_an_error_id_and_no_temp_files(
        params: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        serverless_env: ServerlessDirs) -> None:
    written: list[Path] = []

    def fail_after_writing(*args: Any, **kwargs: Any) -> Any:
        # Run the real generation first, so there are real files in the temp directory to clean up.
        output = video_module.generate_video(*args, **kwargs)
        written.append(output.files["video"])
        raise RuntimeError("decoder exploded: secret detail")

    monkeypatch.setattr(handlers, "generate_video", fail_after_writing)
    with caplog.at_level(logging.ERROR, logger="framepack_api.serverless"):
        response = lambda_handler(rest_v1_event(params), None)
    assert response["statusCode"] == 500
    body = body_of(response)
    assert body["type"] == "internal_error"
    error_id = body["error_id"]
    assert error_id in body["error"]
    assert "secret detail" not in response["body"] and "Traceback" not in response["body"]
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert error_id in logged
    assert any(r.exc_info and "secret detail" in str(r.exc_info[1]) for r in caplog.records)
    assert written and not written[0].exists()
    assert leftovers(serverless_env) == []


@pytest.mark.parametrize("build", [dict, http_v2_event])
def test_response_over_the_limit_is_413_saying_what_to_change(
        params: dict[str, Any], build: Any, monkeypatch: pytest.MonkeyPatch,
        serverless_env: ServerlessDirs) -> None:
    monkeypatch.setenv("FRAMEPACK_API_SERVERLESS_MAX_RESPONSE_BYTES", "2000")
    event = build(params)
    response = failed_direct(event) if build is dict else lambda_handler(event, None)
    body = body_of(response)
    assert body.get("status", response.get("statusCode")) == 413
    if "statusCode" in response:
        assert response["statusCode"] == 413
    assert body["type"] == "response_too_large"
    assert "2000" in body["error"]
    for hint in ("output_url", "video_length", "resolution", "mp4_crf"):
        assert hint in body["error"]
    assert "video_b64" not in body
    assert leftovers(serverless_env) == []


def test_output_url_receives_the_mp4_instead_of_base64(
        params: dict[str, Any], put_receiver: PutReceiver, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path, serverless_env: ServerlessDirs) -> None:
    # Even with a response limit the video could never fit, the upload path succeeds.
    monkeypatch.setenv("FRAMEPACK_API_SERVERLESS_MAX_RESPONSE_BYTES", "2000")
    url = put_receiver.url("/bucket/out/video.mp4?X-Amz-Signature=abc123&X-Amz-Expires=600")
    response = lambda_handler(http_v2_event({**params, "output_url": url}), None)
    assert response["statusCode"] == 200
    body = body_of(response)
    assert "video_b64" not in body
    assert body["video_url"] == put_receiver.url("/bucket/out/video.mp4")
    assert "abc123" not in response["body"]  # the presigned signature is not echoed back
    assert len(put_receiver.received) == 1
    put = put_receiver.received[0]
    assert put["path"] == "/bucket/out/video.mp4?X-Amz-Signature=abc123&X-Amz-Expires=600"
    assert put["headers"]["Content-Type"] == "video/mp4"
    assert len(put["body"]) == body["video_bytes"]
    assert mp4_frames(put["body"], tmp_path) == EXPECTED_FRAMES
    assert body["timings"]["upload"] >= 0
    assert leftovers(serverless_env) == []


def test_refused_upload_is_502_naming_output_url(params: dict[str, Any], put_receiver: PutReceiver,
                                                 serverless_env: ServerlessDirs) -> None:
    put_receiver.status = 403
    response = failed_direct({**params, "output_url": put_receiver.url("/expired")})
    assert response["status"] == 502
    assert response["field"] == "output_url"
    assert "403" in response["error"]
    assert leftovers(serverless_env) == []


def test_generate_video_sync_returns_the_mp4_path(params: dict[str, Any], tmp_path: Path) -> None:
    model, _ = get_models()
    path = generate_video_sync(dict(params), model, out_dir=tmp_path)
    assert path.parent == tmp_path
    assert read_mp4_info(path)["frames"] == EXPECTED_FRAMES


def test_runpod_handler_without_runpod(params: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                       tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "runpod", None)  # import runpod -> ImportError
    output = handler({"id": "job-1", "input": dict(params)})
    assert mp4_frames(base64.b64decode(output["video_b64"]), tmp_path) == EXPECTED_FRAMES
    failed = handler({"id": "job-2", "input": {"prompt": "no image"}})
    # RunPod marks a job FAILED when the output has an "error" key.
    assert isinstance(failed["error"], str)
    assert failed["field"] == "input_image_b64"


def test_runpod_handler_sends_progress_when_runpod_is_there(params: dict[str, Any],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    updates: list[tuple[dict[str, Any], Any]] = []
    runpod = types.ModuleType("runpod")
    serverless = types.ModuleType("runpod.serverless")
    serverless.progress_update = lambda job, progress: updates.append((job, progress))  # type: ignore[attr-defined]
    runpod.serverless = serverless  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "runpod", runpod)
    monkeypatch.setitem(sys.modules, "runpod.serverless", serverless)
    monkeypatch.setenv("FRAMEPACK_API_SERVERLESS_PROGRESS_INTERVAL_S", "0")
    output = handler({"id": "job-3", "input": {**params, "steps": 2}})
    assert "video_b64" in output
    assert [u[1]["step"] for u in updates] == [1, 2]
    assert updates[-1][1]["percent"] == 100.0
    assert updates[0][0]["id"] == "job-3"
    json.dumps([u[1] for u in updates])  # progress must be JSON for RunPod's status endpoint


def test_cli_runpod_without_the_extra_exits_2(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "runpod", None)
    monkeypatch.setattr(handlers, "warm_up", lambda: 0.0)
    assert cli.main(["--runpod"]) == 2
    assert "framepack-api[runpod]" in capsys.readouterr().err
