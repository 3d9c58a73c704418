"""A webhook receiver on loopback that records what it gets and fails when told to."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    fail_next: int = 0  # answer 500 to this many requests first
    # Checks each request as a real receiver would (raises to refuse it): refused ones get a 400.
    verify: Callable[[dict[str, str], bytes], object] | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    attempts: list[Delivery] = field(default_factory=list)  # every request, refused and failed ones too
    failures: int = 0
    refused: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    got_one: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                problem = receiver.check(dict(self.headers.items()), body)
                with receiver.lock:
                    receiver.attempts.append(Delivery(dict(self.headers.items()), body))
                    if problem is not None:
                        receiver.refused.append(problem)
                        code = 400
                    elif receiver.fail_next > 0:
                        receiver.fail_next -= 1
                        receiver.failures += 1
                        code = 500
                    else:
                        receiver.deliveries.append(Delivery(dict(self.headers.items()), body))
                        code = 204
                    receiver.got_one.set()
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def check(self, headers: dict[str, str], body: bytes) -> str | None:
        if self.verify is None:
            return None
        try:
            self.verify(headers, body)
        except Exception as exc:  # whatever the verifier raises is the reason for refusing
            return f"{type(exc).__name__}: {exc}"
        return None

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
