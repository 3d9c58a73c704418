"""Real-weight bookkeeping without the network: which repos and files each preset needs, whether the
Hugging Face cache holds them (built here in huggingface_hub's own layout: refs/main -> snapshots/<rev>),
what /health reports, and `models download` (its plan, HF_HOME, and the error when the hub is away)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub.constants
import pytest
from fastapi.testclient import TestClient

from api.test_health import register_worker
from framepack_api import weights
from framepack_api.api.app import create_app
from framepack_api.settings import Settings

REPO = "lllyasviel/FramePackI2V_HY"


def cache_repo(hub: Path, repo: str, files: dict[str, str], revision: str = "0123abcd") -> Path:
    """A repo in the cache as huggingface_hub leaves it (blobs are plain files here)."""
    repo_dir = hub / ("models--" + repo.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / revision
    for name, text in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_text(text)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)
    return snapshot


def sharded_transformer(shards: int) -> dict[str, str]:
    index = {"weight_map": {"a": "diffusion_pytorch_model-00001-of-00002.safetensors",
                            "b": "diffusion_pytorch_model-00002-of-00002.safetensors"}}
    files = {"config.json": "{}", "diffusion_pytorch_model.safetensors.index.json": json.dumps(index)}
    for n in range(1, shards + 1):
        files[f"diffusion_pytorch_model-0000{n}-of-00002.safetensors"] = "x"
    return files


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_plans_name_the_repos_and_only_the_files_framepack_loads() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    default = weights.plan(settings)
    assert [c.repo for c in default] == ["hunyuanvideo-community/HunyuanVideo", "lllyasviel/flux_redux_bfl", REPO]
    assert [c.name for c in weights.plan(settings, "framepack-f1")][-1] == "F1"
    assert len(weights.plan(settings, "all")) == 4
    hunyuan = weights.plan(settings, "hunyuan")[0]
    assert "vae/*" in hunyuan.allow_patterns and not any(p.startswith("transformer") for p in hunyuan.allow_patterns)
    with pytest.raises(ValueError, match=r"framepack-f1.*FramePackI2V_HY"):
        weights.plan(settings, "FramePack")


def test_cache_state_follows_the_shards_the_index_lists(hub: Path) -> None:
    component = weights.components(Settings(_env_file=None))["FramePackI2V_HY"]  # type: ignore[call-arg]
    assert weights.state(component) == "missing"
    snapshot = cache_repo(hub, REPO, sharded_transformer(shards=1))
    assert weights.state(component) == "incomplete"  # an interrupted download
    (snapshot / "diffusion_pytorch_model-00002-of-00002.safetensors").write_text("x")
    assert weights.state(component) == "present"


def test_a_local_directory_setting_is_checked_in_place(tmp_path: Path, hub: Path) -> None:
    local = tmp_path / "mirror"
    local.mkdir()
    settings = Settings(transformer_f1_repo=str(local), _env_file=None)  # type: ignore[call-arg]
    assert weights.state(weights.components(settings)["F1"]) == "missing"
    (local / "config.json").write_text("{}")
    (local / "diffusion_pytorch_model.safetensors").write_text("x")
    assert weights.state(weights.components(settings)["F1"]) == "present"


def test_health_reports_weights_present_missing_and_loading(hub: Path, tmp_path: Path) -> None:
    cache_repo(hub, REPO, sharded_transformer(shards=2))
    settings = Settings(model="framepack", data_dir=tmp_path / "data", min_free_disk_mb=1,  # type: ignore[call-arg]
                        _env_file=None)
    with TestClient(create_app(settings)) as client:
        body = client.get("/health").json()
        assert body["weights"] == {"hunyuan": "missing", "flux_redux_bfl": "missing",
                                   "FramePackI2V_HY": "present", "F1": "missing"}
        register_worker(settings.resolved_database_url, state="starting")
        assert client.get("/health").json()["weights"]["FramePackI2V_HY"] == "loading"


def cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRAMEPACK_API_", "HF_"))}
    env.update({"HF_HOME": str(home), "HF_HUB_OFFLINE": "1"})
    return subprocess.run([sys.executable, "-m", "framepack_api", "models", "download", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_models_download_plan_honours_hf_home_and_fails_clearly_offline(tmp_path: Path) -> None:
    home = tmp_path / "hf-home"
    cache_repo(home / "hub", REPO, sharded_transformer(shards=2))
    plan = cli("--dry-run", home=home)
    assert plan.returncode == 0, plan.stderr
    lines = plan.stdout.splitlines()
    assert len(lines) == 3
    assert lines[2].startswith("FramePackI2V_HY") and "[present]" in lines[2]
    assert "[missing]" in lines[0] and "size: unknown" in lines[0]
    # present parts are skipped; a missing one cannot be fetched offline: exit 1 and say why
    fetch = cli("FramePackI2V_HY", home=home)
    assert fetch.returncode == 0 and "[present]" in fetch.stdout and "downloaded" not in fetch.stdout
    fetch = cli("F1", home=home)
    assert fetch.returncode == 1
    assert "could not download lllyasviel/FramePack_F1_I2V_HY_20250503" in fetch.stderr
    assert "HF_TOKEN" in fetch.stderr
    bad = cli("nonsense", home=home)
    assert bad.returncode == 2 and "unknown preset" in bad.stderr
