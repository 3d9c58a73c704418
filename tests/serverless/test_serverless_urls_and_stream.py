"""Images by URL (fetched under the webhook URL rules), the streaming RunPod handler, and direct Lambda
invocations that raise — on the real tiny pipeline, with a real image server on 127.0.0.1."""

from __future__ import annotations

import base64
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from framepack_api.serverless import (
    InvalidInputError,
    InvocationFailed,
    lambda_handler,
    model_loads,
    stream_handler,
)
from serverless.serverless_helpers import EXPECTED_FRAMES, body_of, http_v2_event, mp4_frames, png_b64


class ImageServer:
    """Serves a PNG at /start.png and /end.png, an endless body at /endless, a redirect at /moved;
    records every request path."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.images = {"/start.png": base64.b64decode(png_b64(seed=3)),
                       "/end.png": base64.b64decode(png_b64(seed=4))}
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                if self.path in outer.images:
                    body = outer.images[self.path]
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif self.path == "/endless":  # no Content-Length: only counting can stop it
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.end_headers()
                    try:
                        for _ in range(10_000):
                            self.wfile.write(b"\0" * 65536)
                    except OSError:
                        pass  # the client hung up at its limit, as it should
                    self.close_connection = True
                elif self.path == "/moved":
                    self.send_response(302)
                    self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture
def images() -> Iterator[ImageServer]:
    server = ImageServer()
    yield server
    server.server.shutdown()
    server.server.server_close()


def url_params(params: dict[str, Any], **images: str) -> dict[str, Any]:
    return {**{k: v for k, v in params.items() if k != "input_image_b64"}, **images}


def test_images_by_url_make_the_same_video_as_base64(params: dict[str, Any], images: ImageServer,
                                                     tmp_path: Path) -> None:
    by_url = stream_output(url_params(params, input_image_url=images.url("/start.png"),
                                      end_image_url=images.url("/end.png")))
    assert images.requests == ["/start.png", "/end.png"]
    by_b64 = lambda_handler({**params, "input_image_b64": png_b64(seed=3), "end_image_b64": png_b64(seed=4)})
    assert "error" not in by_url, by_url
    assert mp4_frames(base64.b64decode(by_url["video_b64"]), tmp_path) == EXPECTED_FRAMES
    # Same pixels in, same seed: the same video out, so the fetched bytes are what was decoded.
    assert by_url["video_b64"] == by_b64["video_b64"]


def stream_output(params: dict[str, Any]) -> dict[str, Any]:
    items = list(stream_handler({"id": "job-s", "input": params}))
    return items[-1]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_private_url_is_refused_without_fetching(params: dict[str, Any], images: ImageServer,
                                                   monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    monkeypatch.setenv("FRAMEPACK_API_OUTBOUND_ALLOW", "")  # the production default: nothing inside
    handlers_reset_settings()
    loads = model_loads()
    body = raised_body(url_params(params, input_image_url=images.url("/start.png", host)))
    assert body["status"] == 400 and body["field"] == "input_image_url"
    assert "loopback" in body["error"] and "OUTBOUND_ALLOW" in body["error"]
    assert images.requests == []  # refused before (literal) or at (name) connect: nothing was sent
    assert model_loads() == loads


def handlers_reset_settings() -> None:
    """The handler caches Settings per process (warm invocations); tests that change them re-read."""
    from framepack_api.serverless import handlers

    handlers._settings = None


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    handlers_reset_settings()
    yield
    handlers_reset_settings()


@pytest.mark.parametrize(("path", "expected"), [
    ("/endless", "limit"), ("/moved", "HTTP 302 (redirects are not followed)"), ("/missing", "HTTP 404")])
def test_url_fetch_failures_name_the_field(params: dict[str, Any], images: ImageServer,
                                           monkeypatch: pytest.MonkeyPatch, path: str, expected: str) -> None:
    monkeypatch.setenv("FRAMEPACK_API_MAX_UPLOAD_BYTES", str(256 * 1024))
    body = raised_body(url_params(params, input_image_url=images.url(path)))
    assert body["field"] == "input_image_url" and expected in body["error"]
    assert images.requests == [path]  # one GET; the redirect target was never asked


def test_both_forms_of_one_image_are_refused(params: dict[str, Any], images: ImageServer) -> None:
    body = raised_body({**params, "input_image_url": images.url("/start.png")})
    assert body["field"] == "input_image_url" and "not both" in body["error"]
    assert images.requests == []


def raised_body(event: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(InvalidInputError) as raised:
        lambda_handler(event, None)
    return raised.value.body


def test_direct_failure_raises_but_a_proxy_event_answers(params: dict[str, Any]) -> None:
    bad = {**params, "steps": 0}
    with pytest.raises(InvocationFailed) as raised:
        lambda_handler(bad, None)
    assert type(raised.value).__name__ == "InvalidInputError"  # Lambda's errorType
    assert raised.value.status == 400 and raised.value.body["field"] == "steps"
    response = lambda_handler(http_v2_event(bad), None)
    assert response["statusCode"] == 400 and body_of(response)["field"] == "steps"


def test_stream_handler_yields_each_progress_change_then_the_output(params: dict[str, Any],
                                                                    tmp_path: Path) -> None:
    items = list(stream_handler({"id": "job-4", "input": {**params, "steps": 3}}))
    progress, output = items[:-1], items[-1]
    assert [p["step"] for p in progress] == [1, 2, 3]
    assert all(p["type"] == "progress" for p in progress)
    percents = [p["percent"] for p in progress]
    assert percents == sorted(set(percents)) and percents[-1] == 100.0
    assert mp4_frames(base64.b64decode(output["video_b64"]), tmp_path) == EXPECTED_FRAMES
    failed = list(stream_handler({"id": "job-5", "input": {"prompt": "no image"}}))
    assert len(failed) == 1 and failed[0]["field"] == "input_image_b64" and isinstance(failed[0]["error"], str)
