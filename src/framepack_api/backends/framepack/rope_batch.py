"""RoPE batch: one transformer forward over several one-frame samples that differ only in target index.

FramePack-eichi's "RoPE batch" makes one image per RoPE time index of the sampled frame (same input,
prompt and seed), one sampling run per index. Here the indices share one batched forward pass.

diffusers' ``HunyuanVideoFramepackTransformer3DModel`` computes ONE set of rotary embeddings for the
whole batch: its rope module builds a meshgrid of a 1-D ``indices_latents`` (a (B, F) tensor is not
accepted) and returns (tokens, head_dim) cos/sin tables, which ``apply_rotary_emb`` broadcasts over
the batch. So the batched RoPE is built here, with two scoped extensions and no copy of diffusers'
attention code:

1. For the ``with`` body, the transformer's ``rope`` module is wrapped: given (B, F) indices it
   computes each row's table with diffusers' own module and stacks them along the feature axis,
   (tokens, B·head_dim); the clean/history tables (1-D indices, the same for every item) are
   repeated B times the same way. Everything the transformer then does with the tables (concatenate
   along tokens, pad and down-sample the history's tables per feature) acts per feature, so stacking
   along features carries through unchanged.
2. ``diffusers.models.embeddings.apply_rotary_emb`` (which the attention processor imports when it
   runs) learns one more input: tables whose width is batch × the head dim. It applies item b's slice
   to item b with diffusers' own function. Every other input goes to the original untouched — and a
   stacked table is something the original refuses (its width must equal the head dim), so nothing
   that worked before changes meaning. This one is installed once and left in place.

Each item then sees exactly the rotary embedding a batch of one at its index would (tests compare).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch
from diffusers.models import embeddings

_install_lock = threading.Lock()


class StackedRope(torch.nn.Module):
    """The transformer's rope module for a batch of ``batch`` items, tables stacked along features."""

    def __init__(self, rope: torch.nn.Module, batch: int) -> None:
        super().__init__()
        self.inner = rope
        self.batch = batch

    def forward(self, frame_indices: torch.Tensor, height: int, width: int,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if frame_indices.ndim == 2:  # one row of indices per item
            if frame_indices.shape[0] != self.batch:
                raise ValueError(f"{frame_indices.shape[0]} rows of indices for a batch of {self.batch}")
            tables = [self.inner(frame_indices=row, height=height, width=width, device=device)
                      for row in frame_indices]
            return torch.cat([c for c, _ in tables], dim=-1), torch.cat([s for _, s in tables], dim=-1)
        cos, sin = self.inner(frame_indices=frame_indices, height=height, width=width, device=device)
        return cos.repeat(1, self.batch), sin.repeat(1, self.batch)


def _stacked_batch(x: torch.Tensor, cos: torch.Tensor) -> int | None:
    """B when ``cos`` is a stacked table for x's batch of B > 1 items, else None."""
    batch, head_dim = x.shape[0], x.shape[-1]
    if batch > 1 and cos.ndim == 2 and cos.shape[-1] == batch * head_dim:
        return batch
    return None


def _install_stacked_apply() -> None:
    """Teach ``apply_rotary_emb`` stacked tables (idempotent; see the module docstring, point 2)."""
    with _install_lock:
        if getattr(embeddings.apply_rotary_emb, "_framepack_api_stacked", False):
            return
        original: Callable[..., Any] = embeddings.apply_rotary_emb  # its hints say tuple; it returns a tensor

        @functools.wraps(original)  # keeps the original as __wrapped__
        def apply_rotary_emb(x: torch.Tensor, freqs_cis: Any, use_real: bool = True,
                             use_real_unbind_dim: int = -1, sequence_dim: int = 2) -> Any:
            stacked = (_stacked_batch(x, freqs_cis[0])
                       if use_real and isinstance(freqs_cis, tuple) and len(freqs_cis) == 2 else None)
            if stacked is None:
                return original(x, freqs_cis, use_real, use_real_unbind_dim, sequence_dim)
            cos, sin = (t.unflatten(-1, (stacked, -1)) for t in freqs_cis)  # (tokens, B, head_dim)
            return torch.cat([original(x[b:b + 1], (cos[:, b], sin[:, b]), use_real, use_real_unbind_dim,
                                       sequence_dim) for b in range(stacked)])

        apply_rotary_emb._framepack_api_stacked = True  # type: ignore[attr-defined]
        embeddings.apply_rotary_emb = apply_rotary_emb


@contextlib.contextmanager
def batched_rope(transformer: Any, batch: int) -> Iterator[None]:
    """Within the body, ``indices_latents`` of shape (batch, F) gives item b the RoPE indices of row b."""
    if batch == 1:
        yield
        return
    _install_stacked_apply()
    original = transformer.rope
    transformer.rope = StackedRope(original, batch)
    try:
        yield
    finally:
        transformer.rope = original
