"""`GET /status` answers exactly the JobView of the job (every field, as the model dumps it), for a
pending, a running and a completed job; the OpenAPI document still names JobView; unknown ids 404."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from _servers import png_bytes
from framepack_api.api.deps import AppState
from framepack_api.api.views import job_view

SMALL = {"prompt": "a cat", "steps": "2", "video_length": "0.1", "latent_window_size": "1", "resolution": "64"}


def _submit(api: TestClient) -> str:
    r = api.post("/generate", data=SMALL, files={"image": ("in.png", png_bytes(), "image/png")})
    assert r.status_code == 200, r.text
    return str(r.json()["job_id"])


def _expected(state: AppState, job_id: str, body: dict[str, Any]) -> dict[str, Any]:
    job = state.store.get(job_id)
    view = job_view(job, state.store.position(job)).model_dump(mode="json")
    return {**view, "eta_seconds": body["eta_seconds"]}


def test_status_body_is_the_job_view_for_each_state(api: TestClient) -> None:
    state: AppState = api.app.state.framepack  # type: ignore[attr-defined]
    store = state.store
    done_id, running_id, waiting_id, last_id = (_submit(api) for _ in range(4))

    waiting = api.get(f"/status/{waiting_id}")
    assert waiting.headers["content-type"] == "application/json"
    body = waiting.json()
    assert body == _expected(state, waiting_id, body)
    assert body["queue_position"] == 3 and body["status"] == "pending" and body["eta_seconds"] is None  # no history

    first = store.claim("w1")
    assert first is not None and first.id == done_id
    time.sleep(0.01)  # a measurable duration to learn from
    assert store.complete(first, {"video": f"outputs/{done_id}/video.mp4"}, seed=7)
    running = store.claim("w1")
    assert running is not None and running.id == running_id
    store.worker_seen("w1", state="busy", pid=1, hostname="h", preset="tiny", current_job_id=running_id)

    for job_id, status, position in ((done_id, "completed", None), (running_id, "processing", None),
                                     (waiting_id, "pending", 1), (last_id, "pending", 2)):
        body = api.get(f"/status/{job_id}").json()
        assert body == _expected(state, job_id, body), job_id
        assert body["status"] == status and body["queue_position"] == position
        assert body["progress_info"] == body["message"] and body["events_url"] == f"/events/{job_id}"
        if status == "completed":
            assert body["eta_seconds"] is None and body["seed"] == 7 and body["result_url"] == f"/result/{job_id}"
        else:
            assert body["eta_seconds"] is not None and body["eta_seconds"] > 0
    # The later job waits for one more job's time than the earlier one.
    assert api.get(f"/status/{last_id}").json()["eta_seconds"] > api.get(f"/status/{waiting_id}").json()["eta_seconds"]

    missing = api.get("/status/no-such-job")
    assert missing.status_code == 404 and "no-such-job" in missing.json()["detail"]
    schema = api.get("/openapi.json").json()["paths"]["/status/{job_id}"]["get"]["responses"]["200"]
    assert schema["content"]["application/json"]["schema"]["$ref"].endswith("/JobView")
