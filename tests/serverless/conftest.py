"""Fixtures for the serverless handler: the tiny model, event builders, and a PUT receiver on loopback."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from framepack_api.serverless import reset_models
from serverless.serverless_helpers import FAST, PutReceiver, ServerlessDirs, png_b64


@pytest.fixture(scope="session")
def serverless_dirs(tmp_path_factory: pytest.TempPathFactory) -> ServerlessDirs:
    root = tmp_path_factory.mktemp("serverless")
    return ServerlessDirs(data=root / "data", tmp=root / "invocations")


@pytest.fixture(autouse=True)
def serverless_env(monkeypatch: pytest.MonkeyPatch, serverless_dirs: ServerlessDirs) -> ServerlessDirs:
    """The tiny model on the CPU, with data and temporary files under this session's own directory.

    Set per test (monkeypatch), so nothing leaks into other test packages; the handler's cached model
    lives on between tests, as it would between warm invocations.
    """
    monkeypatch.setenv("FRAMEPACK_API_DATA_DIR", str(serverless_dirs.data))
    monkeypatch.setenv("FRAMEPACK_API_MODEL", "tiny")
    monkeypatch.setenv("FRAMEPACK_API_DEVICE", "cpu")
    monkeypatch.setenv("FRAMEPACK_API_SERVERLESS_TMP_DIR", str(serverless_dirs.tmp))
    # The PUT receivers listen on loopback, which output_url may only reach when allowed.
    monkeypatch.setenv("FRAMEPACK_API_OUTBOUND_ALLOW", "127.0.0.1")
    for name in ("FRAMEPACK_API_SERVERLESS_MAX_RESPONSE_BYTES", "FRAMEPACK_API_DEFAULT_RESOLUTION"):
        monkeypatch.delenv(name, raising=False)
    return serverless_dirs


@pytest.fixture(scope="package", autouse=True)
def _forget_model_afterwards() -> Iterator[None]:
    yield
    reset_models()


@pytest.fixture(scope="session")
def params() -> dict[str, Any]:
    """Direct-invocation parameters; tests copy before changing them."""
    return {**FAST, "input_image_b64": png_b64()}


@pytest.fixture
def put_receiver() -> Iterator[PutReceiver]:
    receiver = PutReceiver(base_url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            receiver.received.append({"path": self.path, "headers": dict(self.headers),
                                      "body": self.rfile.read(length)})
            self.send_response(receiver.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
