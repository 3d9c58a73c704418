"""Memory modes: where the pipeline's weights live, so that GPUs from 6 GB up can run FramePack.

- ``gpu``: every component on the GPU (about 41 GiB of weights for the real model).
- ``offload``: diffusers' model-level offload; one whole component on the GPU at a time, so the
  largest (the 24 GiB bf16 transformer) plus activations must fit.
- ``group``: diffusers' block-level group offloading of every component, one block per group,
  prefetched on a CUDA side stream. The first transformer blocks stay *resident* on the GPU as far
  as the job's ``gpu_memory_preservation`` allows (FramePack's own meaning of that number: load
  transformer weights until only that many GB are left free; the rest is streamed block by block).
- ``leaf``: diffusers' leaf-level group offloading (one layer at a time, streamed): the least VRAM.
- ``cpu``: no accelerator; everything stays where it is.

``auto`` picks the first of gpu → offload → group → leaf whose need fits the free VRAM.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch

log = logging.getLogger(__name__)

MemoryMode = Literal["auto", "gpu", "offload", "group", "leaf"]
Placement = Literal["cpu", "gpu", "offload", "group", "leaf"]
GIB = 1024**3
# FramePack's default gpu_memory_preservation: what load-time planning keeps free before any job asks.
DEFAULT_PRESERVE_GB = 6.0
# Activations, the VAE decode and CUDA's own context on top of the weights when a whole model sits on
# the GPU (gpu and offload modes), for FramePack at 640 with VAE tiling: an estimate, not a measurement.
ACTIVATION_HEADROOM_BYTES = 8 * GIB
# Activations of one transformer block at 640 / window 9 (about 15k tokens × 3072 wide, with SDPA's
# memory-efficient attention) and a tiled VAE decode, for choosing between group and leaf offloading:
# also an estimate from the shapes, to be replaced by bench/gpu.py's measured peaks.
LOW_VRAM_ACTIVATION_BYTES = 3 * GIB
# Names of diffusers' group offloading hooks (diffusers.hooks.group_offloading, 0.33 to 0.42 at least).
_GROUP_HOOK = "group_offloading"
_TRACKER_HOOK = "layer_execution_tracker"
_LAZY_HOOK = "lazy_prefetch_group_offloading"
# Free bytes on a device; replaceable so that planning can be exercised without a GPU.
FreeBytes = Callable[[torch.device], int]


def module_bytes(module: torch.nn.Module | None) -> int:
    if module is None:
        return 0
    return sum(p.numel() * p.element_size() for p in module.parameters()) + sum(
        b.numel() * b.element_size() for b in module.buffers()
    )


def torch_modules(pipe: Any) -> dict[str, torch.nn.Module]:
    return {name: m for name, m in pipe.components.items() if isinstance(m, torch.nn.Module)}


def mps_free_bytes() -> int:
    """Apple silicon shares memory between CPU and GPU: Metal's recommended working set, less what
    this process already holds there."""
    return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())


def cuda_free_bytes(device: torch.device) -> int:
    """VRAM this process may still use: the driver's free memory plus what PyTorch's allocator holds
    cached but unused (the last job's activations), capped by the process's memory fraction
    (``torch.cuda.set_per_process_memory_fraction``, which the benchmark uses to stand in for
    smaller cards). Counting the cache keeps the plan the same from one job to the next."""
    free, total = torch.cuda.mem_get_info(device)
    allocated = torch.cuda.memory_allocated(device)
    free += torch.cuda.memory_reserved(device) - allocated
    get_fraction = getattr(torch.cuda, "get_per_process_memory_fraction", None)  # torch >= 2.8
    fraction = float(get_fraction(device)) if get_fraction is not None else 1.0
    if fraction < 1.0:
        free = min(free, int(total * fraction) - allocated)
    return max(int(free), 0)


@dataclass(frozen=True)
class ModelSizes:
    """What each memory mode needs to hold at once, in bytes (weights only)."""

    total: int  # gpu mode: everything
    largest_component: int  # offload mode: one whole component
    group_peak: int  # group mode: a component's non-block weights + two blocks (one computing, one arriving)
    leaf_peak: int  # leaf mode: two of the largest layers

    @classmethod
    def of(cls, modules: Sequence[torch.nn.Module]) -> ModelSizes:
        group_peak = leaf_peak = 0
        for module in modules:
            blocks = [b for child in module.children()
                      if isinstance(child, (torch.nn.ModuleList, torch.nn.Sequential)) for b in child]
            block_sizes = sorted((module_bytes(b) for b in blocks), reverse=True)
            rest = module_bytes(module) - sum(block_sizes)
            group_peak = max(group_peak, rest + sum(block_sizes[:2]))
            leaves = sorted((module_bytes(m) for m in module.modules() if not list(m.children())),
                            reverse=True)
            leaf_peak = max(leaf_peak, sum(leaves[:2]))
        return cls(total=sum(module_bytes(m) for m in modules),
                   largest_component=max((module_bytes(m) for m in modules), default=0),
                   group_peak=group_peak, leaf_peak=leaf_peak)


def choose_placement(memory_mode: MemoryMode, device: torch.device, sizes: ModelSizes,
                     preserve_gb: float, free_bytes: int | None = None) -> Placement:
    """The placement for ``memory_mode`` on ``device``; ``auto`` decides from ``free_bytes``.

    ``auto`` takes the fastest mode that fits: gpu and offload when their weights fit next to the
    activation headroom with ``preserve_gb`` still free; else group when a component's non-block
    weights and two blocks fit next to one block's activations; else leaf. In group mode
    ``preserve_gb`` then decides, per job, how many blocks stay resident (``plan_transformer``).
    """
    if device.type == "cpu":
        # Group offloading works with the CPU as onload device (that is how the tests exercise it);
        # gpu and model-level offload need an accelerator, and without one everything stays put.
        return memory_mode if memory_mode in ("group", "leaf") else "cpu"
    if memory_mode != "auto":
        return memory_mode
    if free_bytes is None:
        free_bytes = mps_free_bytes() if device.type == "mps" else cuda_free_bytes(device)
    keep = int(preserve_gb * GIB)
    placement: Placement
    if sizes.total + ACTIVATION_HEADROOM_BYTES + keep <= free_bytes:
        placement = "gpu"
    elif sizes.largest_component + ACTIVATION_HEADROOM_BYTES + keep <= free_bytes:
        placement = "offload"
    elif sizes.group_peak + LOW_VRAM_ACTIVATION_BYTES <= free_bytes:
        placement = "group"
    else:
        placement = "leaf"
        if sizes.leaf_peak + LOW_VRAM_ACTIVATION_BYTES > free_bytes:
            log.warning("memory: %.1f GiB free is less than even leaf-level offloading is estimated to "
                        "need; jobs may run out of memory", free_bytes / GIB)
    log.info("memory: %.1f GiB of weights (largest component %.1f), %.1f GiB free on %s, keep %.1f GiB "
             "-> %s", sizes.total / GIB, sizes.largest_component / GIB, free_bytes / GIB, device,
             preserve_gb, placement)
    return placement


def transformer_blocks(transformer: torch.nn.Module) -> list[torch.nn.Module]:
    """The transformer's blocks in the order its forward runs them (double, then single)."""
    blocks: list[torch.nn.Module] = []
    for name in ("transformer_blocks", "single_transformer_blocks"):
        blocks += list(getattr(transformer, name, []))
    return blocks


def plan_resident_blocks(block_bytes: Sequence[int], available_bytes: int, preserve_bytes: int) -> int:
    """How many leading blocks fit on the GPU with ``preserve_bytes`` still free afterwards."""
    budget = available_bytes - preserve_bytes
    count = 0
    for size in block_bytes:
        if size > budget:
            break
        budget -= size
        count += 1
    return count


def _registry(module: torch.nn.Module) -> Any:
    from diffusers.hooks import HookRegistry

    return HookRegistry.check_if_exists_or_initialize(module)


def is_group_offloaded(module: torch.nn.Module) -> bool:
    """True when any part of ``module`` has a group offloading hook (leaf level hooks only layers)."""
    for sub in module.modules():
        registry = getattr(sub, "_diffusers_hook", None)
        if registry is not None and registry.get_hook(_GROUP_HOOK) is not None:
            return True
    return False


def _group_offload(module: torch.nn.Module, device: torch.device, leaf: bool) -> None:
    from diffusers.hooks import apply_group_offloading

    # A CUDA side stream overlaps the next group's upload with this group's compute; it needs pinned
    # host copies of the offloaded weights (host RAM about the size of the weights).
    stream = device.type == "cuda"
    block_modules = None
    if not leaf and hasattr(module, "decode") and getattr(module, "_group_offload_block_modules", None) is None:
        # Block level onloads a model's loose parts when its forward() runs, but pipelines call a
        # VAE's decode(), never its forward(): offload each child (encoder, decoder, quant convs) as a
        # block of its own instead, as diffusers does for the VAEs that declare it (AutoencoderKL).
        block_modules = [name for name, _ in module.named_children()]
    apply_group_offloading(module, onload_device=device, offload_device=torch.device("cpu"),
                           offload_type="leaf_level" if leaf else "block_level",
                           num_blocks_per_group=None if leaf else 1, non_blocking=stream, use_stream=stream,
                           block_modules=block_modules)


def remove_group_offload(module: torch.nn.Module) -> None:
    registry = _registry(module)
    for name in (_GROUP_HOOK, _TRACKER_HOOK, _LAZY_HOOK):
        registry.remove_hook(name, recurse=True)
    module.to("cpu")


def resident_blocks(transformer: torch.nn.Module) -> int:
    """Leading blocks that sit on the onload device without an offloading hook."""
    count = 0
    for block in transformer_blocks(transformer):
        if is_group_offloaded(block):
            break
        count += 1
    return count


def set_resident_blocks(transformer: torch.nn.Module, device: torch.device, count: int) -> None:
    """Group-offload ``transformer`` block by block, except its first ``count`` blocks, which stay
    on ``device``. Starts over from plain CPU weights, so it is right after any earlier layout,
    including diffusers re-applying the offloading itself when a LoRA is loaded."""
    if is_group_offloaded(transformer):
        remove_group_offload(transformer)
    _group_offload(transformer, device, leaf=False)
    blocks = transformer_blocks(transformer)
    lazy = _registry(transformer).get_hook(_LAZY_HOOK)
    names = {id(b): n for n, b in transformer.named_modules()}
    for block in blocks[:count]:
        registry = _registry(block)
        registry.remove_hook(_GROUP_HOOK, recurse=False)
        # With streams, the lazy prefetcher tracks every hooked block at application time to learn the
        # execution order; a resident block must leave that order, or the prefetch chain breaks on it.
        registry.remove_hook(_TRACKER_HOOK, recurse=False)
        if lazy is not None:
            lazy._layer_execution_tracker_module_names.discard(names[id(block)])
        block.to(device)


def place_pipeline(pipe: Any, placement: Placement, device: torch.device, preserve_gb: float = DEFAULT_PRESERVE_GB,
                   free_bytes: FreeBytes | None = None) -> None:
    """Put the pipeline's weights where ``placement`` says (from CPU weights)."""
    if placement in ("gpu", "cpu"):
        pipe.to(device)
        return
    if placement == "offload":
        # Re-installs hooks for every component, so it is also right after a transformer swap.
        pipe.enable_model_cpu_offload(device=device)
    else:
        for name, module in torch_modules(pipe).items():
            if (name != "transformer" or placement == "leaf") and not is_group_offloaded(module):
                _group_offload(module, device, leaf=placement == "leaf")
        if placement == "group":
            plan_transformer(pipe.transformer, device, preserve_gb, free_bytes)
    # Tiles bound the decode's activations; slicing only matters for batches (FramePack decodes one).
    pipe.vae.enable_tiling()
    pipe.vae.enable_slicing()


def plan_transformer(transformer: torch.nn.Module, device: torch.device, preserve_gb: float,
                     free_bytes: FreeBytes | None = None) -> dict[str, Any]:
    """Make as many transformer blocks resident as leave ``preserve_gb`` free (group mode).

    Free memory is measured now, with the resident blocks counted as available: a job asking to
    preserve more gets fewer resident blocks, one asking for less gets more. Nothing moves when the
    count is already right.
    """
    blocks = transformer_blocks(transformer)
    sizes = [module_bytes(b) for b in blocks]
    current = resident_blocks(transformer) if is_group_offloaded(transformer) else -1
    probe = free_bytes or (cuda_free_bytes if device.type == "cuda" else None)
    if probe is None:
        # A CPU onload device has no separate memory to preserve: stream every block (the slow,
        # fully offloaded path, which is the one worth exercising without a GPU).
        wanted = 0
    else:
        available = probe(device) + sum(sizes[:max(current, 0)])
        wanted = plan_resident_blocks(sizes, available, int(preserve_gb * GIB))
    if wanted != current:
        log.info("memory: %d of %d transformer blocks resident, keeping %.1f GiB free",
                 wanted, len(blocks), preserve_gb)
        set_resident_blocks(transformer, device, wanted)
    return {"resident_blocks": wanted, "offloaded_blocks": len(blocks) - wanted,
            "resident_gib": round(sum(sizes[:wanted]) / GIB, 3)}


def prepare_job(pipe: Any, placement: Placement, device: torch.device, preserve_gb: float,
                free_bytes: FreeBytes | None = None) -> dict[str, Any]:
    """Apply a job's ``gpu_memory_preservation`` and describe the memory layout it runs with."""
    info: dict[str, Any] = {"mode": placement, "gpu_memory_preservation": preserve_gb}
    if placement == "group":
        info.update(plan_transformer(pipe.transformer, device, preserve_gb, free_bytes))
    else:
        # gpu/offload keep whole models on the GPU and leaf keeps none: the layout is fixed at load
        # (auto took the default 6 GB into account), so there is nothing per job to adjust.
        info["preservation_applied"] = False
    return info


def release(pipe: Any, placement: Placement, name: str) -> None:
    """Remove offloading from a component before it is replaced (transformer swap)."""
    module = cast(torch.nn.Module | None, getattr(pipe, name, None))
    if placement == "offload":
        pipe.remove_all_hooks()
    elif module is not None and placement in ("group", "leaf") and is_group_offloaded(module):
        remove_group_offload(module)
