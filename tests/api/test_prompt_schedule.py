"""Timestamped prompts at the API: a malformed schedule is a 422 naming `prompt` and the problem,
a good one is stored as text and shown parsed, with its sections, in /status."""

from __future__ import annotations

import base64
import json
import sqlite3

import pytest
from fastapi.testclient import TestClient

from framepack_api.params.prompt_schedule import cue_index_by_section, parse_schedule, section_prompts
from framepack_api.settings import Settings

from support.server import FAST, png_bytes


def rows(settings: Settings) -> int:
    with sqlite3.connect(settings.data_dir / "framepack-api.db") as db:
        return int(db.execute("SELECT count(*) FROM jobs").fetchone()[0])


BAD = [
    ("unordered", "[0s] a [2s] b [1s] c", "times must increase: 1s comes after 2s"),
    ("repeated time", "[0s] a [1s] b [1s] c", "times must increase"),
    ("negative", "[-1s] a [1s] b", "-1s is negative"),
    ("not from 0", "[0.5s] a [1s] b", "first prompt must start at 0s"),
    ("beyond the video", "[0s] a [5s] b", "5s is not before the end of the video (4s)"),
    ("at the very end", "[0s] a [4s] b", "not before the end"),
    ("empty prompt", "[0s] a [2s]   ", "the prompt at 2s is empty"),
    ("no unit", "[0s] a [2] b", "needs a unit"),
    ("text before the first time", "[0s]", "the prompt at 0s is empty"),
    ("malformed JSON", '[{"start": 0, "prompt": "a"', "malformed JSON"),
    ("JSON start not a number", '[{"start": "0s", "prompt": "a"}]', "must be a number"),
    ("JSON unknown key", '[{"start": 0, "prompt": "a", "weight": 2}]', "unknown keys: weight"),
    ("JSON empty prompt", '[{"start": 0, "prompt": ""}]', "empty"),
]


@pytest.mark.parametrize(("case", "prompt", "problem"), BAD, ids=[c[0] for c in BAD])
def test_bad_schedule_is_a_422_naming_prompt(api: TestClient, settings: Settings, case: str, prompt: str,
                                             problem: str) -> None:
    r = api.post("/generate", data={**FAST, "video_length": "4", "prompt": prompt},
                 files={"image": ("a.png", png_bytes(), "image/png")})
    assert r.status_code == 422, r.text
    [error] = r.json()["detail"]
    assert error["loc"] == ["body", "prompt"] and problem in error["msg"], error
    assert rows(settings) == 0


def test_schedule_as_a_json_list_is_stored_as_text_and_shown_parsed(api: TestClient) -> None:
    schedule = [{"start": 0, "prompt": "a girl stands"}, {"start": 0.5, "prompt": "she waves"},
                {"start": 0.9, "prompt": "she turns"}]
    # window 2: sections of 8 frames (0.267 s); 1.2 s → 4 sections starting at 0, 0.267, 0.533, 0.8 s
    body = {**FAST, "video_length": 1.2, "prompt": schedule,
            "image": base64.b64encode(png_bytes()).decode()}
    r = api.post("/generate", json=body)
    assert r.status_code == 200, r.text
    status = api.get(f"/status/{r.json()['job_id']}").json()
    assert json.loads(status["params"]["prompt"]) == schedule
    assert status["prompt_schedule"] == [
        {"start": 0.0, "prompt": "a girl stands", "sections": [1, 2]},
        {"start": 0.5, "prompt": "she waves", "sections": [3, 4]},
        {"start": 0.9, "prompt": "she turns", "sections": []},  # starts inside the last section
    ]


def test_plain_prompt_has_no_schedule(api: TestClient) -> None:
    r = api.post("/generate", data={**FAST, "prompt": "[cinematic] a cat"},
                 files={"image": ("a.png", png_bytes(), "image/png")})
    assert r.status_code == 200, r.text
    assert api.get(f"/status/{r.json()['job_id']}").json()["prompt_schedule"] is None


def test_sections_take_the_prompt_in_force_at_their_first_frame() -> None:
    cues = parse_schedule("[0s] a [1.2s] b [1.3s] c [2.5s] d")
    assert cues is not None and [c.start for c in cues] == [0, 1.2, 1.3, 2.5]
    # window 9: sections start at 0, 1.2, 2.4, 3.6 s; a cue exactly at a start is in force there.
    assert cue_index_by_section(cues, 4, 9) == [0, 1, 2, 3]
    assert section_prompts("[0s] a [1.2s] b [1.3s] c [2.5s] d", 4, 9) == ["a", "b", "c", "d"]
    assert section_prompts("[0s] a [2s] b", 4, 9) == ["a", "a", "b", "b"]
    assert section_prompts("plain", 3, 9) == ["plain"] * 3
