"""The docs' runnable commands work as written: every ```console block in README.md and docs/*.md,
one `$ command` per line, runs from a fresh directory (`.venv/bin/` standing for the virtualenv that
`make` creates, here the one running the tests), offline and with its own data directory and
Hugging Face cache. Only cheap commands are marked `console`; the rest stay ```bash."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^```console\n(.*?)^```", re.MULTILINE | re.DOTALL)


def runnable_commands() -> list[tuple[str, str]]:
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in BLOCK.findall(doc.read_text()):
            for line in block.splitlines():
                if line.startswith("$ "):
                    found.append((doc.relative_to(ROOT).as_posix(), line[2:]))
    return found


COMMANDS = runnable_commands()


def test_the_docs_mark_commands_as_runnable() -> None:
    docs = {doc for doc, _ in COMMANDS}
    assert {"README.md", "docs/DEPLOY.md"} <= docs, docs
    assert all(cmd.startswith(".venv/bin/") for _, cmd in COMMANDS), COMMANDS


@pytest.mark.parametrize(("doc", "command"), COMMANDS, ids=[c for _, c in COMMANDS])
def test_runnable_command(doc: str, command: str, tmp_path: Path) -> None:
    venv_bin = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRAMEPACK_API_", "HF_"))}
    env.update({"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"})
    done = subprocess.run(["bash", "-c", command.replace(".venv/bin/", f"{venv_bin}/")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"{doc}: `{command}` exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert done.stdout.strip(), f"{doc}: `{command}` printed nothing"
