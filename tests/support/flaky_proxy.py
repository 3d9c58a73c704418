"""A reverse proxy on 127.0.0.1 in front of a real server that misbehaves on cue, the way a load
balancer does while a backend restarts: it answers 502/503/504 itself, or forwards the request and
then drops the connection without answering (the server acted, the client never heard).

Faults are queued per (method, path prefix) and each used once; every request is recorded.
"""

from __future__ import annotations

import http.server
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "te", "trailer",
              "upgrade", "proxy-authorization", "proxy-authenticate"}


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    fault: str | None


@dataclass
class FlakyProxy:
    upstream: str
    faults: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path prefix, fault)
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    def fail(self, method: str, prefix: str, *faults: str) -> None:
        """Queue faults for the next matching requests: "502", "503", "504", "drop-before", "drop-after"."""
        self.faults.extend((method, prefix, f) for f in faults)

    def take(self, method: str, path: str) -> str | None:
        for i, (m, prefix, fault) in enumerate(self.faults):
            if m == method and path.startswith(prefix):
                del self.faults[i]
                return fault
        return None

    def requests(self, method: str, prefix: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.path.startswith(prefix)]


def start_proxy(upstream: str) -> tuple[FlakyProxy, http.server.ThreadingHTTPServer]:
    proxy = FlakyProxy(upstream)
    lock = threading.Lock()
    http_client = httpx.Client(base_url=upstream, timeout=120)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def handle_any(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
            with lock:
                fault = proxy.take(self.command, self.path)
                proxy.seen.append(Seen(self.command, self.path, dict(self.headers), fault))
            if fault in ("502", "503", "504"):
                self.send_response(int(fault))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if fault == "drop-before":
                self.drop()
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            answer = http_client.request(self.command, self.path, content=body, headers=headers)
            if fault == "drop-after":  # the server did the work; its answer never reaches the client
                self.drop()
                return
            self.send_response(answer.status_code)
            for name, value in answer.headers.items():
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-encoding":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        def drop(self) -> None:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

        do_GET = do_POST = do_DELETE = handle_any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return proxy, server
