"""output_url follows the server's URL rules (issue 11 item 4) and never echoes the target's answer.

Only loopback receives anything: inside addresses are refused while parsing (before a model runs),
and a name that resolves to loopback is refused at connect time by a guard with a given resolver.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from framepack_api.errors import InvalidInput
from framepack_api.net_guard import NetGuard
from framepack_api.serverless.events import parse_request
from framepack_api.serverless.handlers import UploadFailed, _upload
from framepack_api.settings import Settings

INTERNAL_ANSWER = "internal-service-token-7f3a"


class Answering:
    """A PUT target on loopback that refuses with a body an internal service might send."""

    def __init__(self) -> None:
        self.puts = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.puts += 1
                body = INTERNAL_ANSWER.encode()
                self.send_response(403)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])


@pytest.fixture
def target() -> Iterator[Answering]:
    t = Answering()
    yield t
    t.server.shutdown()
    t.server.server_close()


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/v.mp4",
                                 "http://[fd00:ec2::254]/", "http://0x7f000001/v.mp4", "http://0.0.0.0/"])
def test_inside_addresses_are_refused_before_anything_runs(params: dict[str, Any], url: str) -> None:
    settings = Settings(_env_file=None, outbound_allow=[])  # type: ignore[call-arg]
    with pytest.raises(InvalidInput) as err:
        parse_request({**params, "output_url": url}, settings)
    assert err.value.field == "output_url" and "OUTBOUND_ALLOW" in str(err.value)


def test_the_targets_answer_is_never_echoed(target: Answering) -> None:
    allowed = NetGuard.from_entries(["127.0.0.1"])
    with pytest.raises(UploadFailed) as err:
        _upload(f"http://127.0.0.1:{target.port}/v.mp4", b"video", 10.0, allowed)
    assert target.puts == 1 and "403" in str(err.value)
    assert INTERNAL_ANSWER not in str(err.value)


def test_a_name_resolving_inside_is_refused_at_connect_time(target: Answering) -> None:
    guard = NetGuard.from_entries([], resolver=lambda host, port: ["127.0.0.1"])
    with pytest.raises(UploadFailed, match="loopback"):
        _upload(f"http://bucket.test:{target.port}/v.mp4", b"video", 10.0, guard)
    assert target.puts == 0
