"""A small HTTP/1.1 keep-alive load generator on raw asyncio streams (wrk is not installed here).

Each of ``connections`` tasks holds one keep-alive connection and sends ``GET path`` back to back,
reading each answer in full (status line, headers, ``Content-Length`` body) before the next, so it
measures closed-loop throughput like wrk does. Parsing is minimal on purpose: the client must cost
far less per request than the servers it compares, which httpx does not on a 2-core machine.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0  # answers other than 200, and broken connections
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    first_body: bytes = b""

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
            break
    body = await reader.readexactly(length) if length else b""
    return status, body


async def _one_connection(host: str, port: int, request: bytes, until: float, out: LoadResult) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < until:
            t0 = time.perf_counter()
            writer.write(request)
            status, body = await _read_answer(reader)
            out.latencies_ms.append((time.perf_counter() - t0) * 1000)
            if status == 200:
                out.requests += 1
                if not out.first_body:
                    out.first_body = body
            else:
                out.errors += 1
    except (ConnectionError, asyncio.IncompleteReadError):
        out.errors += 1
    finally:
        writer.close()


async def run_load(host: str, port: int, path: str, *, connections: int, seconds: float,
                   headers: dict[str, str] | None = None) -> LoadResult:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    out = LoadResult()
    start = time.perf_counter()
    until = start + seconds
    await asyncio.gather(*(_one_connection(host, port, request, until, out) for _ in range(connections)))
    out.seconds = time.perf_counter() - start
    return out


def load(host: str, port: int, path: str, *, connections: int = 32, seconds: float = 10.0) -> LoadResult:
    return asyncio.run(run_load(host, port, path, connections=connections, seconds=seconds))
