"""LoRA for the FramePack transformer: three key formats, applied per job (files: lora_files.py).

Formats, all converted here to diffusers/PEFT keys (``transformer.<module>.lora_A/B.weight``):

- diffusers / PEFT: ``transformer.<module>.lora_A.weight`` (the prefix may be missing);
- Musubi-tuner: ``lora_unet_<module with '_' for '.'>.lora_down.weight`` / ``.lora_up.weight`` / ``.alpha``.
  Musubi's FramePack model uses diffusers' module names (``lora_unet_transformer_blocks_0_attn_to_q``);
  its HunyuanVideo LoRAs use the original names (``lora_unet_double_blocks_0_img_attn_qkv``): both work;
- original HunyuanVideo: ``[diffusion_model.]double_blocks.0.img_attn_qkv.lora_A.weight`` and friends,
  with the fused qkv / linear1 projections split onto diffusers' separate q, k, v (and mlp) layers.

diffusers' own converter for original HunyuanVideo keys hard-codes the real model's width (3072) for
``linear1``; converting here from the loaded transformer's sizes makes every model, the tiny one
included, take all three formats. Alphas are folded into ``lora_B`` so PEFT's scaling is 1.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from framepack_api.lora_files import LoraError, resolve_lora_path

if TYPE_CHECKING:  # torch is imported where weights are touched: the API process lists and checks files only
    import torch

log = logging.getLogger(__name__)


@dataclass
class _Pair:
    down: torch.Tensor | None = None
    up: torch.Tensor | None = None
    alpha: float | None = None


# Original HunyuanVideo double-block layers → diffusers'; "qkv" entries split their output in three.
_DOUBLE = {
    "img_attn_qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "txt_attn_qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
    "img_attn_proj": ("attn.to_out.0",),
    "txt_attn_proj": ("attn.to_add_out",),
    "img_mlp.fc1": ("ff.net.0.proj",),
    "img_mlp.fc2": ("ff.net.2",),
    "txt_mlp.fc1": ("ff_context.net.0.proj",),
    "txt_mlp.fc2": ("ff_context.net.2",),
    "img_mod.linear": ("norm1.linear",),
    "txt_mod.linear": ("norm1_context.linear",),
}
_SINGLE = {
    "linear1": ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"),
    "linear2": ("proj_out",),
    "modulation.linear": ("norm.linear",),
}


def _original_names(transformer: Any) -> dict[str, tuple[str, ...]]:
    """Original layer name → diffusers layer name(s), for this transformer's block counts."""
    names: dict[str, tuple[str, ...]] = {"final_layer.linear": ("proj_out",),
                                         "final_layer.adaLN_modulation.1": ("norm_out.linear",)}
    for i in range(len(transformer.transformer_blocks)):
        for src, dst in _DOUBLE.items():
            names[f"double_blocks.{i}.{src}"] = tuple(f"transformer_blocks.{i}.{d}" for d in dst)
    for i in range(len(transformer.single_transformer_blocks)):
        for src, dst in _SINGLE.items():
            names[f"single_blocks.{i}.{src}"] = tuple(f"single_transformer_blocks.{i}.{d}" for d in dst)
    return names


_SUFFIXES = {".lora_A.weight": "down", ".lora_down.weight": "down", ".lora_B.weight": "up",
             ".lora_up.weight": "up", ".alpha": "alpha"}


def _group(state: dict[str, torch.Tensor]) -> dict[str, _Pair]:
    pairs: dict[str, _Pair] = {}
    for key, value in state.items():
        for suffix, part in _SUFFIXES.items():
            if key.endswith(suffix):
                pair = pairs.setdefault(key[: -len(suffix)], _Pair())
                if part == "alpha":
                    pair.alpha = float(value.float().item())
                else:
                    setattr(pair, part, value)
                break
        else:
            raise LoraError(f"unsupported LoRA key {key!r} (not lora_A/B, lora_down/up or alpha)")
    return pairs


def to_diffusers(state: dict[str, torch.Tensor], transformer: Any) -> dict[str, torch.Tensor]:
    """Any supported format → ``transformer.<module>.lora_A/B.weight``, alphas folded into lora_B."""
    import torch
    linears = _linear_layers(transformer)
    original = _original_names(transformer)
    # Musubi writes module names with '_' for '.'; both naming schemes are looked up that way.
    by_underscore: dict[str, tuple[str, ...]] = {n.replace(".", "_"): (n,) for n in linears}
    by_underscore.update({n.replace(".", "_"): d for n, d in original.items()})
    out: dict[str, torch.Tensor] = {}
    for raw, pair in _group(state).items():
        name = raw.removeprefix("diffusion_model.").removeprefix("transformer.")
        if name.startswith("lora_unet_"):
            targets = by_underscore.get(name.removeprefix("lora_unet_"))
        else:
            targets = original.get(name) or ((name,) if name in linears else None)
        if targets is None:
            raise LoraError(f"LoRA layer {raw!r} matches no layer of the FramePack transformer")
        if pair.down is None or pair.up is None:
            raise LoraError(f"LoRA layer {raw!r} lacks its down or up weight")
        rank = pair.down.shape[0]
        up = pair.up.float() * (pair.alpha / rank if pair.alpha is not None else 1.0)
        if name.endswith("final_layer.adaLN_modulation.1"):
            # The original final modulation is (shift, scale); diffusers' norm_out.linear is (scale, shift).
            shift, scale = up.chunk(2, dim=0)
            up = torch.cat([scale, shift], dim=0)
        sizes = [linears[t].out_features for t in targets]
        if up.shape[0] != sum(sizes) or pair.down.shape[1] != linears[targets[0]].in_features:
            raise LoraError(f"LoRA layer {raw!r} has shapes {tuple(pair.down.shape)}/{tuple(pair.up.shape)}, "
                            f"which do not fit this model (was it trained for another model?)")
        for target, part in zip(targets, torch.split(up, sizes, dim=0), strict=True):
            out[f"transformer.{target}.lora_A.weight"] = pair.down.float().contiguous()
            out[f"transformer.{target}.lora_B.weight"] = part.contiguous()
    if not out:
        raise LoraError("the LoRA file holds no LoRA weights")
    return out


def _linear_layers(transformer: Any) -> dict[str, Any]:
    """Linear layers by name, seen through any LoRA already loaded (PEFT wraps each in ``base_layer``)."""
    import torch

    layers = {}
    for name, module in transformer.named_modules():
        if isinstance(module, torch.nn.Linear) and not any(f".{p}." in name for p in ("lora_A", "lora_B")):
            layers[name.removesuffix(".base_layer")] = module
    return layers


def load_lora_file(path: Path, transformer: Any) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as exc:  # a corrupt or non-safetensors file is the client's LoRA problem
        raise LoraError(f"cannot read LoRA {path.name}: {exc}") from None
    return to_diffusers(state, transformer)


# -- applying LoRAs to jobs ------------------------------------------------------------------


@dataclass(frozen=True)
class _Loaded:
    # A weak reference, not id(): a swapped-out transformer's id can be reused by its successor.
    transformer: weakref.ref[Any]
    adapters: tuple[str, ...]  # one adapter name per file, in the job's order

    def on(self, transformer: Any) -> bool:
        return self.transformer() is transformer


class LoraManager:
    """Applies a job's LoRAs for the duration of the job.

    Between jobs the adapters are disabled (so nothing leaks into the next job); a following job with
    the same files re-enables them instead of reading them again, and any other job unloads them first.
    """

    def __init__(self, lora_dir: Path | None) -> None:
        self.lora_dir = lora_dir
        self.loaded: _Loaded | None = None

    @contextlib.contextmanager
    def applied(self, transformer: Any, pairs: list[tuple[str, float]]) -> Iterator[list[dict[str, Any]]]:
        """Apply ``[(name, scale), ...]`` to ``transformer`` for the ``with`` body; yields what was applied."""
        paths = [resolve_lora_path(self.lora_dir, name) for name, _ in pairs]
        # Adapter names change with the file's content stamp, so an edited file is read again.
        adapters = tuple(_adapter_name(p) for p in paths)
        if len(set(adapters)) != len(adapters):
            raise LoraError("the same LoRA is listed twice")
        current = self.loaded
        if current is None or not current.on(transformer) or current.adapters != adapters:
            self._unload(transformer)
            for path, adapter in zip(paths, adapters, strict=True):
                state = load_lora_file(path, transformer)
                transformer.load_lora_adapter(state, prefix="transformer", adapter_name=adapter)
            self.loaded = _Loaded(weakref.ref(transformer), adapters) if adapters else None
            if adapters:
                log.info("loaded LoRAs %s", [name for name, _ in pairs])
        if not adapters:
            yield []
            return
        transformer.enable_lora()
        transformer.set_adapters(list(adapters), [float(scale) for _, scale in pairs])
        try:
            yield [{"name": name, "scale": scale} for name, scale in pairs]
        finally:
            transformer.disable_lora()

    def _unload(self, transformer: Any) -> None:
        if self.loaded is not None and self.loaded.on(transformer):
            transformer.unload_lora()
        self.loaded = None


def _adapter_name(path: Path) -> str:
    stat = path.stat()
    stamp = f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode()
    return f"lora_{hashlib.sha256(stamp).hexdigest()[:12]}"
