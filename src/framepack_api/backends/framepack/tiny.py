"""The tiny FramePack pipeline: the real diffusers/transformers classes with random weights.

It exists so that tests, CI and GPU-less machines run the real loading and sampling code
(``from_pretrained`` → ``HunyuanVideoFramepackPipeline.__call__``) in about a second per job.
Its output is noise. Everything is built offline: the tokenizers come from an in-code vocabulary.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

log = logging.getLogger(__name__)

# Bump when anything below changes the saved model, so existing copies are rebuilt.
TINY_MODEL_VERSION = 2
MARKER_NAME = "framepack_api_tiny.json"
SEED = 20250503

# Sizes. The constraints come from the pipeline and the transformer:
# - heads × head_dim must match sum(rope_axes_dim) per head (RoPE covers the whole head).
# - text_embed_dim == Llama hidden size; pooled_projection_dim == CLIP hidden size.
# - image_proj_dim == SigLIP hidden size.
# - Llama needs >= 3 hidden states: the pipeline reads hidden_states[-3] (2 layers + embeddings).
# - The Llama context must fit the prompt template's 95 cropped tokens + 256 prompt tokens.
LATENT_CHANNELS = 4
LLAMA_HIDDEN = 16
CLIP_HIDDEN = 8
SIGLIP_HIDDEN = 32
SIGLIP_IMAGE = 32
LLAMA_CONTEXT = 512
CLIP_CONTEXT = 77


def _llama_vocab() -> dict[str, int]:
    # Byte-fallback tokens cover every UTF-8 input; a handful of pieces keep common text short.
    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    pieces = ["▁", *[f"<0x{b:02X}>" for b in range(256)]]
    pieces += [chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces += [f"▁{chr(c)}" for c in range(ord("a"), ord("z") + 1)]
    return {tok: i for i, tok in enumerate(specials + pieces)}


def _clip_vocab() -> dict[str, int]:
    # CLIP's BPE marks word ends with "</w>"; single characters in both forms tokenize any ASCII text,
    # everything else maps to the unknown token.
    specials = ["<|startoftext|>", "<|endoftext|>"]
    chars = [chr(c) for c in range(33, 127)]
    return {tok: i for i, tok in enumerate(specials + chars + [f"{c}</w>" for c in chars])}


def build_tiny_pipeline() -> object:
    """Construct the tiny pipeline in memory (random weights, deterministic for a fixed torch seed)."""
    from diffusers import (
        AutoencoderKLHunyuanVideo,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoFramepackPipeline,
        HunyuanVideoFramepackTransformer3DModel,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTokenizer,
        LlamaConfig,
        LlamaModel,
        LlamaTokenizer,
        SiglipImageProcessor,
        SiglipVisionConfig,
        SiglipVisionModel,
    )

    # fork_rng: seeding must not disturb the caller's global RNG state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        transformer = HunyuanVideoFramepackTransformer3DModel(
            in_channels=LATENT_CHANNELS,
            out_channels=LATENT_CHANNELS,
            num_attention_heads=2,
            attention_head_dim=10,
            num_layers=1,
            num_single_layers=1,
            num_refiner_layers=1,
            mlp_ratio=2.0,
            patch_size=2,
            patch_size_t=1,
            text_embed_dim=LLAMA_HIDDEN,
            pooled_projection_dim=CLIP_HIDDEN,
            rope_axes_dim=(2, 4, 4),
            image_condition_type=None,
            has_image_proj=True,
            image_proj_dim=SIGLIP_HIDDEN,
            has_clean_x_embedder=True,
        )
        vae = AutoencoderKLHunyuanVideo(
            latent_channels=LATENT_CHANNELS,
            block_out_channels=(4, 4, 4, 4),  # the VAE decode dominates tiny jobs; 4 halves it vs 8
            layers_per_block=1,
            norm_num_groups=4,
            spatial_compression_ratio=8,
            temporal_compression_ratio=4,
        )
        # FramePack computes a resolution-dependent shift (mu) and passes it to the scheduler.
        scheduler = FlowMatchEulerDiscreteScheduler(shift=7.0, use_dynamic_shifting=True)
        text_encoder = LlamaModel(
            LlamaConfig(
                vocab_size=len(_llama_vocab()),
                hidden_size=LLAMA_HIDDEN,
                intermediate_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                num_key_value_heads=2,
                max_position_embeddings=LLAMA_CONTEXT,
                pad_token_id=3,
            )
        )
        text_encoder_2 = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(_clip_vocab()),
                hidden_size=CLIP_HIDDEN,
                intermediate_size=16,
                projection_dim=CLIP_HIDDEN,
                num_hidden_layers=1,
                num_attention_heads=2,
                max_position_embeddings=CLIP_CONTEXT,
                bos_token_id=0,
                eos_token_id=1,
                pad_token_id=1,
            )
        )
        image_encoder = SiglipVisionModel(
            SiglipVisionConfig(
                hidden_size=SIGLIP_HIDDEN,
                intermediate_size=32,
                num_hidden_layers=1,
                num_attention_heads=2,
                image_size=SIGLIP_IMAGE,
                patch_size=8,
            )
        )

    tokenizer = LlamaTokenizer(
        vocab=_llama_vocab(),
        merges=[],
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        padding_side="right",  # the pipeline assumes right padding; the attribute alone is not saved
        model_max_length=LLAMA_CONTEXT,
    )
    tokenizer_2 = CLIPTokenizer(
        vocab=_clip_vocab(),
        merges=[],
        unk_token="<|endoftext|>",
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=CLIP_CONTEXT,
    )
    feature_extractor = SiglipImageProcessor(
        size={"height": SIGLIP_IMAGE, "width": SIGLIP_IMAGE},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return HunyuanVideoFramepackPipeline(
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        vae=vae,
        scheduler=scheduler,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        image_encoder=image_encoder,
        feature_extractor=feature_extractor,
    )


def build_tiny_model(path: Path) -> None:
    """Build the tiny pipeline and save it with ``save_pretrained`` into ``path`` (plus a marker file)."""
    pipe = build_tiny_pipeline()
    path.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(path)  # type: ignore[attr-defined]
    # The marker is written last: a directory without it is incomplete or from another builder.
    (path / MARKER_NAME).write_text(json.dumps({"version": TINY_MODEL_VERSION, "seed": SEED}))


def is_current(path: Path) -> bool:
    """True when ``path`` holds a complete tiny model written by this builder version."""
    try:
        marker = json.loads((path / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("version") == TINY_MODEL_VERSION


def ensure_tiny_model(models_dir: Path) -> Path:
    """Return ``models_dir/"tiny"``, building it first when missing or outdated.

    Safe with several processes at once: each builds into its own temporary directory next to the
    target and renames it into place; ``os.rename`` of a directory is atomic and fails when the target
    already exists, so exactly one build wins and the others are discarded.
    """
    target = models_dir / "tiny"
    if is_current(target):
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-build-", dir=models_dir))
    try:
        build_tiny_model(tmp)
        if target.exists() and not is_current(target):
            # An outdated or broken copy: move it aside atomically, then delete it. Another process
            # may do the same concurrently; whoever loses the rename simply finds it gone.
            stale = Path(tempfile.mkdtemp(prefix=".tiny-stale-", dir=models_dir))
            with contextlib.suppress(OSError):  # another process moved it already
                os.rename(target, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(tmp, target)
            log.info("built the tiny FramePack model at %s", target)
        except OSError:
            # Lost the race: another process renamed a complete model into place first.
            if not is_current(target):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
