"""Seed 004's training-video flow on a real server: generate → status → cached → delete → regenerate,
and the cache surviving a restart."""

from __future__ import annotations

import concurrent.futures
import uuid
from typing import Any

import httpx

from _servers import Server, wait_for
from framepack_api.media.video import read_mp4_info

SERVICE = "/api/video-generation"


def new_run() -> int:
    return uuid.uuid4().int % 10**9


def jobs_for(http: httpx.Client, drill: str) -> list[dict[str, Any]]:
    return [j for j in http.get("/queue").json()["queue"] if drill in j["prompt"]]


def completed(http: httpx.Client, run_id: int) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        body = http.get(f"{SERVICE}/status/{run_id}").json()
        assert body["status"] not in ("failed", "cancelled"), body
        return body if body["status"] == "completed" else None

    return dict(wait_for(check, timeout=60))


def test_health_answers_like_seed_004(http: httpx.Client, training_server: Server) -> None:
    body = http.get(f"{SERVICE}/").json()
    assert body["status"] == "healthy" and body["service"] == "video_generation"
    assert body["backend"] == "framepack" and body["model"] == "tiny"
    unauthenticated = httpx.get(f"{training_server.url}{SERVICE}/")
    assert unauthenticated.status_code == 401 and "Basic" in unauthenticated.headers["www-authenticate"]


def test_generate_status_cached_delete_regenerate(http: httpx.Client, training_server: Server, tmp_path: Any) -> None:
    run_id, drill = new_run(), f"high knees {uuid.uuid4()}"
    first = http.post(f"{SERVICE}/generate", json={"run_id": run_id, "drill_text": drill})
    assert first.status_code == 200
    assert first.json()["run_id"] == run_id and first.json()["status"] in ("pending", "processing", "completed")
    status = completed(http, run_id)
    assert status["error"] is None and status["video_url"] == f"{SERVICE}/video/{run_id}"
    mp4 = http.get(status["video_url"])
    assert mp4.status_code == 200 and mp4.headers["content-type"] == "video/mp4"
    (tmp_path / "a.mp4").write_bytes(mp4.content)
    assert read_mp4_info(tmp_path / "a.mp4")["frames"] == 17  # 0.5 s, window 2: two sections

    [job] = jobs_for(http, drill)
    assert drill in job["prompt"] and "training drill" in job["prompt"]
    again = http.post(f"{SERVICE}/generate", json={"run_id": run_id, "drill_text": drill}).json()
    assert again == {"run_id": run_id, "status": "completed", "video_url": status["video_url"]}
    assert [j["job_id"] for j in jobs_for(http, drill)] == [job["job_id"]]  # no second job

    assert http.delete(f"{SERVICE}/cache/{run_id}").json() == {"run_id": run_id, "deleted": True}
    assert http.get(f"{SERVICE}/status/{run_id}").status_code == 404
    assert http.get(status["video_url"]).status_code == 404
    assert jobs_for(http, drill) == []
    assert not (training_server.data_dir / "files" / "outputs" / job["job_id"]).exists()
    assert http.delete(f"{SERVICE}/cache/{run_id}").json()["deleted"] is False

    http.post(f"{SERVICE}/generate", json={"run_id": run_id, "drill_text": drill})
    completed(http, run_id)
    [new_job] = jobs_for(http, drill)
    assert new_job["job_id"] != job["job_id"]


def test_calls_for_a_run_in_flight_share_one_job(http: httpx.Client) -> None:
    run_id, drill = new_run(), f"lunges {uuid.uuid4()}"
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(
            lambda _: http.post(f"{SERVICE}/generate", json={"run_id": run_id, "drill_text": drill}).json(),
            range(4)))
    assert {a["run_id"] for a in answers} == {run_id}
    # A request that lost the race cancels the job it had queued. A worker may have claimed that job
    # in between (a loaded machine); it stops at its next step, so wait for that rather than assume it.
    def one_live_job() -> list[dict[str, Any]] | None:
        found = jobs_for(http, drill)
        live = [j for j in found if j["status"] != "cancelled"]
        return found if len(live) == 1 else None

    wait_for(one_live_job, timeout=60)
    completed(http, run_id)
    [live] = [j for j in jobs_for(http, drill) if j["status"] != "cancelled"]
    assert http.get(f"/status/{live['job_id']}").json()["status"] == "completed"


def test_the_cache_survives_a_restart(training_server: Server) -> None:
    run_id, drill = new_run(), f"strides {uuid.uuid4()}"
    with training_server.http() as http:
        http.post(f"{SERVICE}/generate", json={"run_id": run_id, "drill_text": drill})
        before = completed(http, run_id)
        video_before = http.get(before["video_url"]).content
    training_server.restart()
    with training_server.http() as http:
        after = http.get(f"{SERVICE}/status/{run_id}").json()
        assert after == before
        assert http.get(after["video_url"]).content == video_before
        again = http.post(f"{SERVICE}/generate", json={"run_id": run_id, "drill_text": drill}).json()
        assert again["status"] == "completed" and again["video_url"] == before["video_url"]
        assert len(jobs_for(http, drill)) == 1
