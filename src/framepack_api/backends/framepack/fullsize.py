"""The real FramePack model's shapes, without its weights: for memory planning, tests and bench/gpu.py.

Sizes are taken from the configs of the repos the ``framepack`` preset loads (values written out here
so that nothing is downloaded):

- transformer: diffusers' ``HunyuanVideoFramepackTransformer3DModel`` defaults are HunyuanVideo's
  (24 heads × 128, 20 double + 40 single blocks, text 4096, pooled 768); FramePack adds the SigLIP
  image projection (1152) and the clean-latent (2×/4×) embedders — lllyasviel/FramePackI2V_HY's
  ``config.json`` has ``has_image_proj`` and ``has_clean_x_embedder`` true.
- VAE: ``AutoencoderKLHunyuanVideo`` defaults are HunyuanVideo's VAE (16 latent channels).
- text encoders (hunyuanvideo-community/HunyuanVideo): a Llama-3-8B (llava-llama-3-8b text part,
  vocabulary 128320) and CLIP ViT-L/14's text model; image encoder (lllyasviel/flux_redux_bfl):
  SigLIP so400m-patch14-384.
"""

from __future__ import annotations

from typing import Any, cast

import torch

TRANSFORMER_EXTRA: dict[str, Any] = {"has_image_proj": True, "image_proj_dim": 1152,
                                     "has_clean_x_embedder": True}
LLAMA: dict[str, Any] = {"vocab_size": 128320, "hidden_size": 4096, "intermediate_size": 14336,
                         "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
                         "max_position_embeddings": 8192}
CLIP_TEXT: dict[str, Any] = {"vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072,
                             "num_hidden_layers": 12, "num_attention_heads": 12, "projection_dim": 768,
                             "max_position_embeddings": 77}
SIGLIP: dict[str, Any] = {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27,
                          "num_attention_heads": 16, "image_size": 384, "patch_size": 14}


def transformer(**overrides: Any) -> torch.nn.Module:
    """The FramePack transformer (on the current default device; use ``torch.device("meta")`` for shapes)."""
    from diffusers import HunyuanVideoFramepackTransformer3DModel

    return cast(torch.nn.Module, HunyuanVideoFramepackTransformer3DModel(**{**TRANSFORMER_EXTRA, **overrides}))


def vae() -> torch.nn.Module:
    from diffusers import AutoencoderKLHunyuanVideo

    return cast(torch.nn.Module, AutoencoderKLHunyuanVideo())


def encoders() -> dict[str, torch.nn.Module]:
    """The text and image encoders at full size (build them on the meta device: 9 B parameters)."""
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        LlamaConfig,
        LlamaModel,
        SiglipVisionConfig,
        SiglipVisionModel,
    )

    return {"text_encoder": LlamaModel(LlamaConfig(**LLAMA)),
            "text_encoder_2": CLIPTextModel(CLIPTextConfig(**CLIP_TEXT)),
            "image_encoder": SiglipVisionModel(SiglipVisionConfig(**SIGLIP))}


def meta_components() -> dict[str, torch.nn.Module]:
    """Every torch component of the real pipeline, in its loading dtypes, with no storage."""
    with torch.device("meta"):
        parts = {"transformer": transformer().to(torch.bfloat16), "vae": vae().to(torch.float16)}
        parts.update({name: m.to(torch.float16) for name, m in encoders().items()})
    return parts
