"""LOG_FORMAT=json on a real `serve` with one worker: every line on stderr (API, uvicorn, worker, the
model libraries) is one JSON object; lines about a job carry its job_id and the worker_id; the worker
starts without warnings. /ready answers 200 once the worker is live."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from support.server import Server

TINY_NOTICE = "using the TINY model"  # the one warning a tiny-model server gives on purpose


def test_json_log_lines_carry_job_and_worker_ids(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", env={"FRAMEPACK_API_LOG_FORMAT": "json"}).start(timeout=240)
    try:
        ready = httpx.get(f"{server.url}/ready", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json()["ready"] is True and ready.json()["job_types"]["video"] == 1
        job_id = server.submit()
        assert server.wait_for(job_id, timeout=180)["status"] == "completed"
    finally:
        server.stop()
    lines = [line for line in server.log(tail=None).splitlines() if line.strip()]
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
    assert all({"time", "level", "logger", "message", "pid"} <= set(e) for e in entries)
    about_job = [e for e in entries if e.get("job_id") == job_id]
    worker_ids = {e["worker_id"] for e in about_job if "worker_id" in e}
    assert len(worker_ids) == 1, about_job
    assert any(e["logger"] == "framepack_api.worker.runner" and "attempt 1" in e["message"] for e in about_job)
    assert any(e["logger"].startswith("uvicorn") for e in entries)  # the API's own lines are JSON too
    warnings = [e for e in entries if e["level"] in ("WARNING", "ERROR", "CRITICAL")
                and TINY_NOTICE not in e["message"]]
    assert warnings == [], warnings
