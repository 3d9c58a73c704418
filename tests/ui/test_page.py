"""The page in a real browser against a real server with the tiny model.

Helpers drive it the way a user does: upload, type, open accordions, click tabs and buttons."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.server import Server, free_port

# 8 sections with a VAE decode between each: long enough that the page's 0.5 s refresh sees progress
# move even on a fast, quiet machine. (steps stays 20: the reuse check below expects it.)
WATCHABLE = {"steps": "20", "video_length": "3", "latent_window_size": "3", "resolution": "64", "seed": "7"}
# Minutes with the tiny model: stays running (or pending behind it) while a test cancels it.
LONG = {"steps": "60", "video_length": "3", "latent_window_size": "3", "resolution": "128"}


def tab(page: Any, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()


def set_number(page: Any, elem_id: str, value: str) -> None:
    """A slider's or number box's number input: type, then leave the field so Gradio takes it."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(value)
    box.press("Tab")


def open_advanced(page: Any) -> None:
    accordion = page.locator("#vid-advanced")
    if not accordion.locator("#vid-latent_window_size").is_visible():
        accordion.get_by_text("Advanced", exact=True).click()
    accordion.locator("#vid-latent_window_size").wait_for(state="visible")


def fill_video_form(page: Any, image: Path, prompt: str, params: dict[str, str]) -> None:
    page.locator("#vid-image input[type=file]").set_input_files(str(image))
    page.locator("#vid-image img").first.wait_for(state="visible")  # the upload was taken
    page.locator("#vid-prompt textarea").fill(prompt)
    if set(params) & {"latent_window_size", "resolution", "cfg", "sampling_mode"}:
        open_advanced(page)
    for name, value in params.items():
        set_number(page, f"vid-{name}", value)


def submit_video(page: Any) -> str:
    """Press "Add to queue" and return the id the page reports."""
    page.locator("#vid-submit").click()
    notice = page.locator("#vid-notice .fp-notice")
    notice.wait_for(state="visible")
    match = re.search(r"Queued job ([0-9a-f-]{36})", notice.inner_text())
    assert match, notice.inner_text()
    return match.group(1)


def queue_row(page: Any, job_id: str) -> Any:
    return page.locator(".fp-row", has=page.locator(f'.fp-job[data-job-id="{job_id}"]'))


def wait_status(page: Any, job_id: str, status: str, timeout: float = 60.0) -> Any:
    card = page.locator(f'.fp-job[data-job-id="{job_id}"][data-status="{status}"]')
    card.wait_for(state="visible", timeout=timeout * 1000)
    return card


def progress_values(page: Any, until_status: str = "completed", timeout: float = 90.0) -> list[float]:
    """Every distinct progress value the Job tab showed, until the job reaches `until_status`."""
    seen: list[float] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        bar = page.locator("#job-progress [role=progressbar]")
        if bar.count():
            value = float(bar.first.get_attribute("aria-valuenow") or 0)
            if not seen or seen[-1] != value:
                seen.append(value)
        if page.locator(f'#job-header .fp-job-head[data-status="{until_status}"]').count():
            return seen
        time.sleep(0.1)
    raise AssertionError(f"job never reached {until_status}; progress seen: {seen}")


# -- the tests ----------------------------------------------------------------------------------------


def test_submit_watch_progress_and_play_the_video(page: Any, server: Server, start_png: Path, shot: Any) -> None:
    fill_video_form(page, start_png, "a red square dances", WATCHABLE)
    shot(page, "1-form")
    job_id = submit_video(page)
    shot(page, "2-submitted")

    # The job is in the queue at once, with its thumbnail, type and a progress bar.
    tab(page, "Queue")
    row = queue_row(page, job_id)
    row.wait_for(state="visible", timeout=5_000)
    card = row.locator(".fp-job")
    assert card.locator("img.fp-thumb").get_attribute("src").startswith("data:image/jpeg;base64,")
    assert "Video" in card.inner_text()
    assert card.locator("[role=progressbar]").count() == 1
    shot(page, "3-queue")

    # The Job tab follows it: progress moves, the latent preview shows, then the video gets its source.
    row.locator(".fp-open").click()
    page.locator("#job-header code", has_text=job_id).wait_for(state="visible")
    page.locator("#job-preview img").wait_for(state="visible", timeout=60_000)
    assert page.locator("#job-preview img").get_attribute("src").startswith("data:image/jpeg;base64,")
    shot(page, "4-running")
    seen = progress_values(page, "completed")
    running = [v for v in seen if 0 < v < 100]
    assert len(running) >= 2 and running == sorted(running), f"progress did not move: {seen}"
    assert seen[-1] == 100

    video = page.locator("#job-video video")
    video.wait_for(state="attached", timeout=30_000)
    page.wait_for_function("() => { const v = document.querySelector('#job-video video');"
                           " return v && v.currentSrc && v.currentSrc.length > 0; }", timeout=30_000)
    src = video.evaluate("v => v.currentSrc")
    assert "/ui/" in src and src.split("?")[0].endswith(".mp4"), src
    assert page.locator("#job-download").is_visible()
    params = page.locator("#job-params").inner_text()
    assert "a red square dances" in params and "latent_window_size" in params
    shot(page, "5-done")
    assert server.wait_for(job_id)["status"] == "completed"

    # "Use these settings again" puts the parameters back into the Video tab.
    tab(page, "Video")
    set_number(page, "vid-steps", "30")  # changed, to see it refilled
    tab(page, "Job")
    page.locator("#job-reuse").click()
    page.locator("#vid-submit").wait_for(state="visible")
    page.wait_for_function("() => document.querySelector('#vid-steps input[type=number]').value === '20'")
    assert page.locator("#vid-prompt textarea").input_value() == "a red square dances"


@pytest.fixture
def long_job(server: Server) -> Iterator[str]:
    """A job that keeps the only worker busy; cancelled afterwards whatever the test did."""
    job_id = server.submit(**LONG)
    server.wait_for(job_id, ("processing",))
    yield job_id
    server.client().post(f"/cancel/{job_id}")
    server.wait_for(job_id)


def test_cancel_a_second_job_from_the_queue(page: Any, server: Server, long_job: str, start_png: Path,
                                            shot: Any) -> None:
    running_id = long_job
    fill_video_form(page, start_png, "the second job", {"steps": "4", "video_length": "0.5",
                                                        "resolution": "64"})
    second_id = submit_video(page)

    tab(page, "Queue")
    second = wait_status(page, second_id, "pending", timeout=10)
    assert "#1 in queue" in second.inner_text()
    wait_status(page, running_id, "processing", timeout=10)
    # The running job's row moves on its own (progress events), with nobody pressing anything.
    first_bar = page.locator(f'.fp-job[data-job-id="{running_id}"] [role=progressbar]')
    before = float(first_bar.get_attribute("aria-valuenow") or 0)
    page.wait_for_function(
        f"""() => {{ const b = document.querySelector('.fp-job[data-job-id="{running_id}"] [role=progressbar]');
                    return b && parseFloat(b.getAttribute('aria-valuenow')) > {before}; }}""", timeout=60_000)
    shot(page, "1-two-jobs")

    queue_row(page, second_id).locator(".fp-cancel").click()
    page.locator("#queue-notice .fp-notice").wait_for(state="visible")
    assert "Cancelled job" in page.locator("#queue-notice").inner_text()
    wait_status(page, second_id, "cancelled", timeout=10)
    assert server.client().get(f"/status/{second_id}").json()["status"] == "cancelled"
    assert queue_row(page, second_id).locator(".fp-cancel").count() == 0  # nothing left to cancel
    shot(page, "2-cancelled")

    # A running job stops at its next sampling step.
    queue_row(page, running_id).locator(".fp-cancel").click()
    wait_status(page, running_id, "cancelled", timeout=60)
    assert server.wait_for(running_id)["status"] == "cancelled"
    shot(page, "3-both-cancelled")


def test_api_errors_show_next_to_their_field(page: Any, server: Server, start_png: Path, shot: Any) -> None:
    # Checked on the page: no start image.
    page.locator("#vid-submit").click()
    error = page.locator("#vid-err-image")
    error.wait_for(state="visible")
    assert "Upload a start image" in error.inner_text()

    # Refused by the server (422 on end_image): an end image needs reverse sampling.
    fill_video_form(page, start_png, "forward with an end image", {"steps": "2", "resolution": "64"})
    page.locator("#vid-end_image input[type=file]").set_input_files(str(start_png))
    page.locator("#vid-end_image img").first.wait_for(state="visible")
    page.locator("#vid-sampling_mode").get_by_text("forward", exact=True).click()
    before = len(server.client().get("/queue").json()["queue"])
    page.locator("#vid-submit").click()
    error = page.locator("#vid-err-end_image")
    error.wait_for(state="visible")
    assert "reverse" in error.inner_text()
    assert not page.locator("#vid-err-image").is_visible()  # the earlier error is cleared
    assert page.locator("#vid-notice .fp-notice").count() == 0
    assert "Traceback" not in page.content()
    assert len(server.client().get("/queue").json()["queue"]) == before  # nothing was queued
    shot(page, "1-error")


def test_one_image_job_from_the_images_tab(page: Any, server: Server, shot: Any) -> None:
    tab(page, "Images")
    page.locator("#img-prompt textarea").fill("a small test image")
    for name, value in {"steps": "2", "width": "64", "height": "64", "seed": "3"}.items():
        set_number(page, f"img-{name}", value)
    page.locator("#img-submit").click()
    notice = page.locator("#img-notice .fp-notice")
    notice.wait_for(state="visible")
    job_id = re.search(r"Queued job ([0-9a-f-]{36})", notice.inner_text()).group(1)  # type: ignore[union-attr]
    tab(page, "Queue")
    queue_row(page, job_id).locator(".fp-open").click()
    page.locator("#job-gallery img").first.wait_for(state="visible", timeout=60_000)
    assert page.locator("#job-download").is_visible()
    shot(page, "1-image-done")


def test_the_page_runs_alone_against_a_remote_server(browser: Any, server: Server, shot: Any) -> None:
    """`framepack-api ui --server URL`: its own process and port, talking to the server over HTTP."""
    port = free_port()
    log = server.data_dir / "ui-alone.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "framepack_api", "ui", "--server", server.url,
                                 "--port", str(port)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        job_id = server.submit()
        server.wait_for(job_id)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        assert server.url in page.locator("#fp-title").inner_text()
        # The server runs the tiny model: the page says so on the tab shown, and on the next one.
        notice = page.locator(".fp-tiny:visible")
        notice.first.wait_for(state="visible", timeout=30_000)
        assert "noise" in notice.first.inner_text()
        tab(page, "Queue")
        page.locator(".fp-tiny:visible", has_text="noise").first.wait_for(state="visible", timeout=10_000)
        wait_status(page, job_id, "completed", timeout=30)
        shot(page, "1-queue")
        context.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
