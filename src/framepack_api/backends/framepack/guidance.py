"""Classifier-free guidance with FramePack's re-scale (``rs``).

Strong real CFG inflates the prediction's magnitude (over-exposed, burnt frames). The re-scale of
Lin et al. 2023 ("Common Diffusion Noise Schedules and Sample Steps are Flawed", section 3.4), which
FramePack's sampler applies to its flow prediction, scales the guided prediction back to the standard
deviation of the conditional one and mixes that in by ``rs``: 0 leaves plain CFG, 1 is fully re-scaled.
"""

from __future__ import annotations

import torch


def guided(cond: torch.Tensor, uncond: torch.Tensor, scale: float, rescale: float) -> torch.Tensor:
    """``uncond + scale * (cond - uncond)``, re-scaled toward ``cond``'s std by ``rescale``."""
    noise = uncond + scale * (cond - uncond)
    if rescale == 0:
        return noise  # the exact plain-CFG tensor, so that rs=0 changes nothing
    dims = list(range(1, noise.ndim))  # per sample, over channels, frames and pixels
    # In float32: the std of a bf16 prediction is too coarse for a ratio.
    ratio = cond.float().std(dim=dims, keepdim=True) / noise.float().std(dim=dims, keepdim=True)
    return (rescale * noise.float() * ratio + (1.0 - rescale) * noise.float()).to(noise.dtype)
