"""Cold starts: ``python -m framepack_api.serverless EVENT.json`` in a fresh interpreter per event shape.

Each subprocess imports torch and loads the model from scratch (~10 s), so there is one per shape; the
direct one also runs a second, warm invocation in the same process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from framepack_api.media.video import read_mp4_info
from serverless.serverless_helpers import (
    EXPECTED_FRAMES,
    ServerlessDirs,
    body_of,
    http_v2_event,
    rest_v1_event,
)


@pytest.mark.parametrize(("shape", "repeat"), [("direct", 2), ("rest_v1", 1), ("http_v2", 1)])
def test_cold_start_in_a_fresh_process(params: dict[str, Any], shape: str, repeat: int, tmp_path: Path,
                                       serverless_env: ServerlessDirs) -> None:
    events = {"direct": dict(params), "rest_v1": rest_v1_event(params), "http_v2": http_v2_event(params)}
    event = events[shape]
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(event))
    out = tmp_path / "video.mp4"
    proc = subprocess.run(
        [sys.executable, "-m", "framepack_api.serverless", str(event_file), "--out", str(out),
         "--repeat", str(repeat)],
        capture_output=True, text=True, timeout=240, env=dict(os.environ), check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    responses = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert len(responses) == repeat
    bodies = [body_of(r) for r in responses]
    if shape != "direct":
        assert all(r["statusCode"] == 200 for r in responses)
    assert bodies[0]["timings"]["load"] > 0  # a cold start loads the model...
    assert all(b["timings"]["load"] == 0.0 for b in bodies[1:])  # ...and a warm invocation does not
    assert all(b["frames"] == EXPECTED_FRAMES for b in bodies)
    assert read_mp4_info(out)["frames"] == EXPECTED_FRAMES
    assert "written to" in bodies[0]["video_b64"]
    assert not serverless_env.tmp.exists() or not any(serverless_env.tmp.rglob("*"))
    for i, body in enumerate(bodies):
        print(f"{shape} invocation {i + 1}: load {body['timings']['load']:.2f} s, "
              f"total {body['timings']['total']:.2f} s")
