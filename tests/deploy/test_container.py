"""The container files: compose.yaml is valid and consistent (`docker compose config` where the compose
plugin exists; else the YAML is parsed and its references checked), the Dockerfile builds what the
README says, and its Python layer's requirement line resolves with the constraints (`pip install
--dry-run`: the CUDA torch wheel is not downloaded; the installed CPU torch stands in for it)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def compose_plugin() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=60).returncode == 0


def test_compose_file_validates() -> None:
    if compose_plugin():
        done = subprocess.run(["docker", "compose", "-f", str(ROOT / "compose.yaml"), "config", "--quiet"],
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert done.returncode == 0, done.stderr
    spec = compose()
    services, volumes = spec["services"], spec["volumes"]
    assert set(services) == {"db", "api"}
    db, api = services["db"], services["api"]
    # every named volume a service mounts is declared, and every declared one is used
    mounted = {m.split(":")[0] for s in services.values() for m in s.get("volumes", []) if not m.startswith((".", "/"))}
    assert mounted == set(volumes), (mounted, set(volumes))
    # the API waits for a healthy database, and reaches it with the credentials the database was made with
    assert api["depends_on"]["db"]["condition"] == "service_healthy"
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    env, db_env = api["environment"], db["environment"]
    url = env["FRAMEPACK_API_DATABASE_URL"]
    match = re.fullmatch(r"postgresql\+psycopg://(\w+):(.+)@db:5432/(\w+)", url)
    assert match, url
    assert (match[1], match[2], match[3]) == (db_env["POSTGRES_USER"], db_env["POSTGRES_PASSWORD"],
                                              db_env["POSTGRES_DB"])
    # data and the Hugging Face cache live on volumes at the paths the settings name
    api_mounts = dict(m.split(":", 1) for m in api["volumes"])
    assert api_mounts["data"] == env["FRAMEPACK_API_DATA_DIR"] == "/data"
    assert api_mounts["hf-cache"] == env["HF_HOME"]
    assert api["ports"] == [f"127.0.0.1:{env['FRAMEPACK_API_PORT']}:8000"]
    assert env["FRAMEPACK_API_HOST"] == "0.0.0.0"
    [gpu] = api["deploy"]["resources"]["reservations"]["devices"]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]
    assert "/ready" in " ".join(api["healthcheck"]["test"])
    assert api["build"]["context"] == "." and (ROOT / "Dockerfile").is_file()


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_dockerfile_installs_the_serving_roles_with_constraints_and_serves() -> None:
    steps = dockerfile_instructions()
    args = dict(a.split("=", 1) for kind, a in steps if kind == "ARG")
    assert args["CUDA_IMAGE"].startswith("nvidia/cuda:") and "runtime" in args["CUDA_IMAGE"]
    assert args["TORCH_INDEX_URL"].startswith("https://download.pytorch.org/whl/cu")
    runs = [a for kind, a in steps if kind == "RUN"]
    torch_at = next(i for i, r in enumerate(runs) if "${TORCH_INDEX_URL}" in r)
    app_at = next(i for i, r in enumerate(runs) if ".[server,gpu,ui]" in r)
    assert torch_at < app_at  # the CUDA torch is in place before the constraints-pinned rest
    assert "-c constraints.txt" in runs[app_at]
    for kind, arg in steps:
        if kind == "COPY":
            for source in arg.split()[:-1]:
                assert (ROOT / source).exists(), source
    assert ("CMD", '["framepack-api", "serve"]') in steps
    assert any(kind == "HEALTHCHECK" and "/ready" in arg for kind, arg in steps)


def test_the_images_python_layer_resolves_with_the_constraints() -> None:
    [line] = [a for kind, a in dockerfile_instructions() if kind == "RUN" and ".[server,gpu,ui]" in a]
    words = shlex.split(line)
    assert words[:2] == ["pip", "install"], words
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-build-isolation",
                           "--disable-pip-version-check", *words[2:]], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    if "Could not fetch URL" in done.stdout + done.stderr or "NewConnectionError" in done.stderr:
        pytest.fail(f"the resolver needed the network: something the image needs is not installed here\n"
                    f"{done.stderr[-2000:]}")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Would install framepack-api-0.1.0" in done.stdout
    assert "torch" not in done.stdout.split("Would install")[-1]  # the pinned torch already satisfies it
