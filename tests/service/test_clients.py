"""The Python clients and the CLI against a real server with API keys on, directly and through a
flaky proxy on loopback (502/503/504 answers and dropped connections, as a load balancer gives them)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from framepack_api.cli import app
from framepack_api.client import APIError, AsyncClient, Client, RetryPolicy
from framepack_api.client_common import ProgressFilter
from framepack_api.media.video import read_mp4_info
from framepack_api.worker.lease import FINISHING_MESSAGE

from support.flaky_proxy import FlakyProxy, start_proxy
from support.server import FAST, Server, png_bytes

KEY = "client-test-key-0123456789"
PARAMS: dict[str, Any] = {k: v for k, v in FAST.items()}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("serve-auth"), env={"FRAMEPACK_API_API_KEYS": KEY}).start()
    yield srv
    srv.stop()


@pytest.fixture
def proxy(server: Server) -> Iterator[FlakyProxy]:
    flaky, http_server = start_proxy(server.url)
    yield flaky
    http_server.shutdown()
    http_server.server_close()


class Sleeps(list[float]):
    """Records the backoff the client asked for instead of sleeping it (the tests stay fast)."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "FRAMEPACK_API_KEY"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "framepack_api", *args], capture_output=True, text=True,
                          timeout=180, env=full_env)


def test_cli_sends_the_api_key_from_the_flag_or_the_environment(server: Server, tmp_path: Path) -> None:
    refused = cli("jobs", "ls", "--server", server.url)
    assert refused.returncode == 1 and "Missing credentials" in refused.stderr
    image = tmp_path / "start.png"
    image.write_bytes(png_bytes())
    out = tmp_path / "video.mp4"
    made = cli("generate", str(image), "--seconds", "0.3", "--steps", "2", "--resolution", "64", "--seed", "5",
               "--server", server.url, "--out", str(out), env={"FRAMEPACK_API_KEY": KEY})
    assert made.returncode == 0, made.stderr
    assert read_mp4_info(out)["frames"] > 0
    job_id = made.stderr.split("job ", 1)[1].split()[0]
    shown = cli("jobs", "show", job_id, "--server", server.url, "--api-key", KEY)
    assert shown.returncode == 0 and '"seed": 5' in shown.stdout
    # Every client command takes the same option (one definition); checked in-process, no server needed.
    for command in (["generate"], ["jobs", "ls"], ["jobs", "show"], ["jobs", "cancel"], ["ui"]):
        help_text = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"}).output
        assert "--api-key" in help_text and "FRAMEPACK_API_KEY" in help_text, command


def test_a_submit_whose_answer_was_lost_is_retried_into_the_same_job(server: Server, proxy: FlakyProxy,
                                                                      tmp_path: Path) -> None:
    sleeps = Sleeps()
    with Client(proxy.url, api_key=KEY, sleep=sleeps) as api:
        before = len(api.queue())
        proxy.fail("POST", "/generate", "drop-after", "503")
        job = api.submit_video(png_bytes(), **PARAMS)
        tries = proxy.requests("POST", "/generate")
        assert [t.fault for t in tries] == ["drop-after", "503", None]
        keys = {t.headers["Idempotency-Key"] for t in tries}
        assert len(keys) == 1  # one key on every try: the server knows the retries are the same submit
        assert job["message"].lower().count("idempotency") == 1  # the answer is the replay of the first
        assert len(api.queue()) == before + 1  # the lost first try made the one job; no second
        assert sleeps == [0.5, 1.0]

        proxy.fail("GET", "/status/", "502", "drop-before")
        proxy.fail("GET", "/result/", "504")
        api.wait(job["job_id"], use_events=False, poll_interval=0.05, timeout=120)
        video = api.download(job["job_id"], tmp_path / "v.mp4")
        assert read_mp4_info(video)["frames"] > 0
        assert [t.fault for t in proxy.requests("GET", "/result/")] == ["504", None]


def test_retries_stop_at_the_policy_and_only_for_retryable_answers(server: Server, proxy: FlakyProxy) -> None:
    sleeps = Sleeps()
    with Client(proxy.url, api_key=KEY, retry=RetryPolicy(retries=2, backoff=0.1), sleep=sleeps) as api:
        proxy.fail("GET", "/status/", "503", "503", "503", "503")
        with pytest.raises(APIError) as err:
            api.status("no-such-job")
        assert err.value.status_code == 503 and len(proxy.requests("GET", "/status/")) == 3
        assert sleeps == [0.1, 0.2]
        with pytest.raises(APIError) as err:  # a 4xx is an answer: asked once
            api.submit_video(png_bytes(), **{**PARAMS, "steps": "500"})
        assert err.value.status_code == 422 and len(proxy.requests("POST", "/generate")) == 1
        proxy.faults.clear()


def test_progress_callback_fires_once_per_change(server: Server, proxy: FlakyProxy) -> None:
    seen: list[dict[str, Any]] = []
    with Client(proxy.url, api_key=KEY) as api:
        job = api.submit_video(png_bytes(), **{**PARAMS, "steps": "6"})
        final = api.wait(job["job_id"], on_progress=seen.append, use_events=False, poll_interval=0.02,
                         timeout=120)
    polls = len(proxy.requests("GET", f"/status/{job['job_id']}"))
    keys = [tuple(s.get(k) for k in ProgressFilter.KEYS) for s in seen]
    assert len(set(keys)) == len(keys) and seen[-1]["status"] == final["status"] == "completed"
    assert polls > len(seen)  # polled more often than anything changed


def test_async_client_does_what_the_sync_one_does(server: Server, proxy: FlakyProxy, tmp_path: Path) -> None:
    async def scenario() -> None:
        sleeps: list[float] = []

        async def record(seconds: float) -> None:
            sleeps.append(seconds)

        seen: list[dict[str, Any]] = []
        async with AsyncClient(server.url, api_key=KEY) as api:
            job = await api.submit_video(png_bytes(), **PARAMS)
            final = await api.wait(job["job_id"], on_progress=seen.append, timeout=120)  # server-sent events
            assert final["status"] == "completed" and final["seed"] == 7
            keys = [tuple(s.get(k) for k in ProgressFilter.KEYS) for s in seen]
            assert len(set(keys)) == len(keys) and seen[-1]["status"] == "completed"
            video = await api.download(job["job_id"], tmp_path / "async.mp4")
            assert read_mp4_info(video)["frames"] > 0
            assert (await api.status(job["job_id"]))["job_id"] == job["job_id"]
        async with AsyncClient(proxy.url, api_key=KEY, sleep=record) as flaky:
            proxy.fail("POST", "/generate", "drop-after")
            proxy.fail("POST", "/cancel/", "502")
            retried = await flaky.submit_video(png_bytes(), **{**PARAMS, "steps": "40"})
            cancelled = await flaky.cancel(retried["job_id"])
            assert cancelled["job_id"] == retried["job_id"]
            assert cancelled["status"] == "cancelled" or cancelled["cancel_requested"] is True
            assert [t.fault for t in proxy.requests("POST", "/generate")] == ["drop-after", None]
            assert "idempotency" in retried["message"].lower()
            assert sleeps == [0.5, 0.5]
            with pytest.raises(APIError) as err:
                await flaky.status("no-such-job")
            assert err.value.status_code == 404

    asyncio.run(scenario())


def test_status_shows_the_drawn_seed_while_running_and_never_100_before_completion(server: Server) -> None:
    with Client(server.url, api_key=KEY) as api:
        job = api.submit_video(png_bytes(), **{**PARAMS, "seed": "-1", "steps": "3", "video_length": "0.5"})
        events = list(api.events(job["job_id"], read_timeout=120))
        final = api.status(job["job_id"])
    assert final["status"] == "completed" and final["progress"] == 100.0 and final["seed"] >= 0
    running = [e.data for e in events if e.kind == "progress"]
    assert running and all(e["seed"] == final["seed"] for e in running)  # known from the first step on
    assert all(e["progress"] < 100 for e in running) and running[-1]["progress"] == 99.0
    assert running[-1]["message"] == FINISHING_MESSAGE
    assert [e.data["progress"] for e in events if e.kind == "completed"] == [100.0]
