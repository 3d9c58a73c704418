"""The CLI as a user runs it, against a real server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from framepack_api.media.video import read_mp4_info

from support.server import Server, png_bytes


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "framepack_api", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_generate_shows_progress_and_downloads_the_mp4(server: Server, tmp_path: Path) -> None:
    image = tmp_path / "start.png"
    image.write_bytes(png_bytes())
    out = tmp_path / "video.mp4"
    run = cli("generate", str(image), "--prompt", "a cat", "--seconds", "0.3", "--steps", "2",
              "--resolution", "64", "--seed", "5", "--server", server.url, "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert "queued" in run.stderr and f"saved {out} (seed 5)" in run.stderr
    info = read_mp4_info(out)
    assert info["frames"] == 37 and info["width"] % 16 == 0  # 1 section of the default window 9


def test_generate_reports_a_refusal_with_the_field(server: Server, tmp_path: Path) -> None:
    image = tmp_path / "start.png"
    image.write_bytes(png_bytes())
    run = cli("generate", str(image), "--steps", "500", "--server", server.url)
    assert run.returncode == 2 and "steps" in run.stderr


def test_jobs_ls_show_cancel(server: Server) -> None:
    running = server.submit(steps=60, video_length=3, latent_window_size=3, resolution=128)
    server.wait_for(running, ("processing",))
    waiting = server.submit()
    listing = cli("jobs", "ls", "--server", server.url)
    assert listing.returncode == 0 and waiting[:8] in listing.stdout and "processing" in listing.stdout
    shown = cli("jobs", "show", waiting, "--server", server.url)
    assert json.loads(shown.stdout)["queue_position"] == 1
    cancelled = cli("jobs", "cancel", waiting, "--server", server.url)
    assert cancelled.stdout.strip() == f"{waiting}: cancelled"
    stopping = cli("jobs", "cancel", running, "--server", server.url)
    assert "stops at the next sampling step" in stopping.stdout
    assert server.wait_for(running)["status"] == "cancelled"
    missing = cli("jobs", "show", "nope", "--server", server.url)
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_db_upgrade_and_models_ls(tmp_path: Path) -> None:
    run = cli("db", "upgrade", "--data-dir", str(tmp_path))
    assert run.returncode == 0 and "schema is at head" in run.stdout
    assert (tmp_path / "framepack-api.db").exists()
    models = cli("models", "ls")
    assert "framepack-f1" in models.stdout and "tiny" in models.stdout
