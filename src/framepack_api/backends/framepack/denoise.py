"""The denoising loop that video sections and one-frame images share.

Each step is one transformer call on the prompt's embeddings, with true CFG a second one on the
negative prompt's (FramePack's ``rs`` re-scale applied, guidance.py), then one scheduler step. The
callers differ only in what they hand in, so they hand it in:

- the scheduler, timesteps already set: the section loop uses the pipeline's own with the section's
  dynamic ``mu``; one-frame inference a private one with FramePack's static one-frame shift;
- the conditioning keyword arguments (RoPE indices, clean latents, history, image embeds, guidance);
- any scope around the loop (one-frame's ``without_history`` and ``batched_rope``) stays the caller's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from framepack_api.backends.framepack.guidance import guided

# on_step(step, 1-based; the latents after it)
DenoiseHook = Callable[[int, torch.Tensor], None]


@dataclass
class TextEmbeds:
    """Llama hidden states, CLIP pooled output and attention mask: one row per batch item."""

    embeds: torch.Tensor
    pooled: torch.Tensor
    mask: torch.Tensor


@torch.no_grad()
def denoise(transformer: Any, scheduler: Any, latents: torch.Tensor, text: TextEmbeds,
            negative: TextEmbeds | None, true_cfg: float, rescale: float, conditioning: dict[str, Any],
            on_step: DenoiseHook) -> torch.Tensor:
    """Denoise float32 ``latents`` over ``scheduler.timesteps``; returns the denoised latents.

    ``negative`` None: no true CFG (one transformer call per step; ``true_cfg`` and ``rescale`` unused).
    ``conditioning`` is passed to every transformer call as is. ``on_step`` may raise (a cancelled
    job), which stops the loop there.
    """
    dtype = transformer.dtype
    for step, t in enumerate(scheduler.timesteps):
        # The transformer runs in its own dtype; the scheduler keeps the latents in float32.
        step_in = {"hidden_states": latents.to(dtype), "timestep": t.expand(latents.shape[0]), **conditioning}
        noise = transformer(encoder_hidden_states=text.embeds, encoder_attention_mask=text.mask,
                            pooled_projections=text.pooled, **step_in)[0]
        if negative is not None:
            uncond = transformer(encoder_hidden_states=negative.embeds, encoder_attention_mask=negative.mask,
                                 pooled_projections=negative.pooled, **step_in)[0]
            noise = guided(noise, uncond, true_cfg, rescale)
        latents = scheduler.step(noise.float(), t, latents, return_dict=False)[0]
        on_step(step + 1, latents)
    return latents
