"""Installs by role: the client/CLI install (`pip install framepack-api`) and the API node (`[server]`)
need no torch. The torch-free runs simulate a Python where the model stack is not installed:
`sys.modules[name] = None` makes `import name` raise ImportError and `importlib.util.find_spec(name)`
answer None, exactly as when the package is absent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from framepack_api.hardware import nvidia_driver_present

ROOT = Path(__file__).resolve().parents[2]
MODEL_STACK = ("torch", "diffusers", "transformers", "accelerate", "peft", "sentencepiece")
SERVER_ONLY = ("fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "psycopg", "numpy", "av", "PIL",
               "prometheus_client", "multipart", "python_multipart", "gradio", "huggingface_hub")

PRELUDE = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None  # absent, as in an install without it
"""

SERVER_SCRIPT = PRELUDE + """
import io
import sqlalchemy as sa
from fastapi.testclient import TestClient
from PIL import Image
from framepack_api.api.app import create_app
from framepack_api.jobs.db import create_engine
from framepack_api.settings import Settings

settings = Settings(data_dir=sys.argv[2], model="auto", workers=0, _env_file=None)
png = io.BytesIO()
Image.new("RGB", (64, 48), (10, 200, 30)).save(png, format="PNG")
with TestClient(create_app(settings)) as client:
    health = client.get("/health")
    print("health", health.status_code, health.json()["model"], health.json()["database"])
    answer = client.post("/generate", files={"image": ("a.png", png.getvalue(), "image/png")},
                         data={"prompt": "no torch here", "video_length": "1"})
    print("submit", answer.status_code, answer.json()["status"])
    job_id = answer.json()["job_id"]
engine = create_engine(settings.resolved_database_url)
with engine.connect() as conn:
    row = conn.execute(sa.text("SELECT status, params FROM jobs WHERE id = :id"), {"id": job_id}).one()
print("row", row.status, "no torch here" in row.params)
loaded = sorted(n for n in sys.modules if n.split(".")[0] in sys.argv[1].split(",") and sys.modules[n] is not None)
print("loaded", loaded)
"""

CLIENT_SCRIPT = PRELUDE + """
from typer.testing import CliRunner
from framepack_api import client
from framepack_api.cli import app

runner = CliRunner()
for args in (["--help"], ["generate", "--help"], ["jobs", "ls", "--help"], ["jobs", "show", "--help"],
             ["jobs", "cancel", "--help"]):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (args, result.output)
# a client command reaching an unreachable server fails cleanly, not with an ImportError
result = runner.invoke(app, ["jobs", "ls", "--server", "http://127.0.0.1:9"])
print("jobs ls exit", result.exit_code, type(result.exception).__name__)
print("client", client.Client.__name__)
result = runner.invoke(app, ["models", "download", "--dry-run"])  # a worker-host command: says what to install
print("download exit", result.exit_code, "framepack-api[gpu]" in result.output)
"""


def run(script: str, blocked: tuple[str, ...], *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", script, ",".join(blocked), *args], capture_output=True, text=True,
                          timeout=240, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


def test_api_node_starts_serves_health_and_accepts_a_submit_without_the_model_stack(tmp_path: Path) -> None:
    out = run(SERVER_SCRIPT, MODEL_STACK, str(tmp_path))
    # auto without torch: the real model only where an NVIDIA driver is loaded (a GPU host), else tiny
    expected = "framepack" if nvidia_driver_present() else "tiny"
    assert f"health 503 {expected} True" in out  # 503: no worker yet; the database is reachable
    assert "submit 200 pending" in out
    assert "row pending True" in out
    assert "loaded []" in out


def test_client_commands_work_with_only_the_base_install() -> None:
    out = run(CLIENT_SCRIPT, MODEL_STACK + SERVER_ONLY)
    assert "jobs ls exit 1" in out or "jobs ls exit 2" in out, out
    assert "ImportError" not in out and "ModuleNotFoundError" not in out
    assert "client Client" in out
    assert "download exit 2 True" in out


def _pyproject() -> dict[str, object]:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())  # type: ignore[no-any-return]


def _names(requirements: list[str]) -> set[str]:
    return {Requirement(r).name.lower().replace("_", "-") for r in requirements}


def test_base_and_server_requirements_exclude_the_model_stack() -> None:
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    base = _names(project["dependencies"])
    extras = project["optional-dependencies"]
    server = _names(extras["server"])
    stack = {"torch", "diffusers", "transformers", "accelerate", "peft", "sentencepiece"}
    assert not base & (stack | {"fastapi", "uvicorn", "starlette", "sqlalchemy", "gradio"}), base
    assert not server & stack, server
    assert stack <= _names(extras["gpu"])
    # the worker and the page bring the server's parts; dev brings every role and the test tools
    assert "framepack-api[server]" in extras["gpu"] and "framepack-api[server]" in extras["ui"]
    dev = [Requirement(r) for r in extras["dev"]]
    assert any(r.name == "framepack-api" and {"server", "gpu", "ui"} <= r.extras for r in dev)
    assert {"pytest", "mypy", "ruff"} <= _names(extras["dev"])
    # every requirement is bounded above (the next major cannot land untested)
    for role, requirements in [("base", project["dependencies"]), *extras.items()]:
        for line in requirements:
            req = Requirement(line)
            if req.name != "framepack-api":
                assert any(spec.operator == "<" for spec in req.specifier), (role, line)


def test_make_serve_installs_the_serving_roles_without_test_tools() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert '-e ".[server,gpu,ui]"' in makefile
    assert '-e ".[dev]"' in makefile
