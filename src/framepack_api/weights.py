"""The real model's weights: which Hugging Face repos (and which files of them) each preset needs,
whether they are in the local cache, and downloading them.

No torch here: `/health` on a torch-free API node reports the weights too. The cache is huggingface_hub's
own (it honours HF_HOME, HF_HUB_CACHE and HF_TOKEN); a setting that names a local directory instead of a
repo id is checked in place.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from framepack_api.settings import Settings

WeightState = Literal["present", "incomplete", "missing"]
HealthState = Literal["present", "incomplete", "missing", "loading"]


@dataclass(frozen=True)
class Component:
    name: str  # the preset name of `models download`
    repo: str  # a Hugging Face repo id, or a local directory
    # Only these files are fetched: the HunyuanVideo repo also holds its own 25 GB transformer, which
    # FramePack does not use, and flux_redux_bfl its Redux embedder.
    allow_patterns: tuple[str, ...]
    # Each must match a cached file for the component to count as present.
    required: tuple[str, ...]


def components(settings: Settings) -> dict[str, Component]:
    transformer_files = ("*.json", "*.safetensors")
    transformer_needs = ("config.json", "*.safetensors")
    return {
        "hunyuan": Component(
            "hunyuan", settings.hunyuan_repo,
            ("model_index.json", "scheduler/*", "text_encoder/*", "text_encoder_2/*", "tokenizer/*",
             "tokenizer_2/*", "vae/*"),
            ("model_index.json", "scheduler/scheduler_config.json", "text_encoder/*.safetensors",
             "text_encoder_2/*.safetensors", "tokenizer/tokenizer.json", "tokenizer_2/*", "vae/*.safetensors")),
        "flux_redux_bfl": Component(
            "flux_redux_bfl", settings.siglip_repo, ("feature_extractor/*", "image_encoder/*"),
            ("feature_extractor/preprocessor_config.json", "image_encoder/*.safetensors")),
        "FramePackI2V_HY": Component("FramePackI2V_HY", settings.transformer_repo, transformer_files,
                                     transformer_needs),
        "F1": Component("F1", settings.transformer_f1_repo, transformer_files, transformer_needs),
    }


# What each `models download` argument fetches; the default is what `MODEL=framepack` loads first.
GROUPS: dict[str, tuple[str, ...]] = {
    "framepack": ("hunyuan", "flux_redux_bfl", "FramePackI2V_HY"),
    "framepack-f1": ("hunyuan", "flux_redux_bfl", "F1"),
    "all": ("hunyuan", "flux_redux_bfl", "FramePackI2V_HY", "F1"),
}
DEFAULT_PRESET = "framepack"


def preset_names() -> list[str]:
    return [*GROUPS, *GROUPS["all"]]


def plan(settings: Settings, preset: str = DEFAULT_PRESET) -> list[Component]:
    """The components a preset needs; ValueError naming the choices for an unknown one."""
    table = components(settings)
    if preset in GROUPS:
        return [table[name] for name in GROUPS[preset]]
    if preset in table:
        return [table[preset]]
    raise ValueError(f"unknown preset {preset!r}; one of: {', '.join(preset_names())}")


def snapshot_dir(repo: str) -> Path | None:
    """The cached snapshot of `repo`'s main revision (or the directory itself for a local path)."""
    local = Path(repo).expanduser()
    if local.is_dir():
        return local
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.constants import HF_HUB_CACHE

    # refs/main names the snapshot; any file that is cached there tells us its directory.
    repo_dir = Path(HF_HUB_CACHE) / ("models--" + repo.replace("/", "--"))
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        snapshot = repo_dir / "snapshots" / ref.read_text().strip()
        return snapshot if snapshot.is_dir() else None
    cached = try_to_load_from_cache(repo, "model_index.json") or try_to_load_from_cache(repo, "config.json")
    return Path(cached).parent if isinstance(cached, str) else None


def cached_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def state(component: Component) -> WeightState:
    """present: every required file is there, and every shard a safetensors index lists; incomplete:
    some are; missing: nothing is cached."""
    root = snapshot_dir(component.repo)
    if root is None:
        return "missing"
    files = cached_files(root)
    if not files:
        return "missing"
    for pattern in component.required:
        if not any(fnmatch.fnmatch(f, pattern) for f in files):
            return "incomplete"
    for index in (f for f in files if f.endswith(".safetensors.index.json")):
        try:
            shards = set(json.loads((root / index).read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError, TypeError):
            return "incomplete"
        folder = index.rpartition("/")[0]
        if any(f"{folder}/{s}".lstrip("/") not in files for s in shards):
            return "incomplete"
    return "present"


def remote_size(component: Component, timeout: float = 10.0) -> int | None:
    """Bytes the download would fetch, from the hub's file list; None when the hub cannot be asked
    (offline, HF_HUB_OFFLINE=1, a local directory)."""
    if Path(component.repo).expanduser().is_dir():
        return None
    try:
        from huggingface_hub import HfApi

        info = HfApi().model_info(component.repo, files_metadata=True, timeout=timeout)
    except Exception:  # offline, rate-limited, gated without a token: the size is only informative
        return None
    return sum(s.size or 0 for s in info.siblings or []
               if any(fnmatch.fnmatch(s.rfilename, p) for p in component.allow_patterns))


def download(component: Component) -> Path:
    """Fetch the component's files into the cache, with huggingface_hub's progress bars."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(component.repo, allow_patterns=list(component.allow_patterns)))


def health_report(settings: Settings, *, loading: bool) -> dict[str, HealthState]:
    """Each part's state; a present part reads `loading` while a worker is loading the real model."""
    found: dict[str, HealthState] = {}
    for name, component in components(settings).items():
        here = state(component)
        found[name] = "loading" if loading and here == "present" else here
    return found
