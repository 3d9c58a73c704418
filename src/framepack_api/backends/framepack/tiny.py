"""The tiny FramePack model: the real diffusers/transformers classes with random weights, saved in the
real Hugging Face repos' formats.

It exists so that tests, CI and GPU-less machines run the real loading and sampling code
(``from_pretrained`` of the same files the real presets read → ``HunyuanVideoFramepackPipeline``) in
about a second per job. Its output is noise. Everything is built offline: the tokenizers come from an
in-code vocabulary.

The saved directory holds three "repos", laid out like the real ones:

- ``hunyuan/`` like ``hunyuanvideo-community/HunyuanVideo``: ``model_index.json`` (HunyuanVideoPipeline),
  ``tokenizer/`` (a ByteLevel BPE ``tokenizer.json`` with ``tokenizer_class: LlamaTokenizerFast``, as the
  real Llama-3 tokenizer), ``tokenizer_2/`` (CLIP), ``text_encoder/`` (Llama), ``text_encoder_2/`` (CLIP),
  ``vae/`` and ``scheduler/`` (the real ``scheduler_config.json``, see ``HUNYUAN_SCHEDULER_CONFIG``).
  The real repo's 13B HunyuanVideo ``transformer/`` is never read by FramePack, so it is not built.
- ``flux_redux_bfl/`` like ``lllyasviel/flux_redux_bfl``: ``image_encoder/`` (SigLIP), ``feature_extractor/``.
- ``FramePackI2V_HY/`` like the FramePack transformer repos: ``config.json`` (class name as in the real
  repos, ``HunyuanVideoTransformer3DModelPacked``) and the weights at the root. The tiny model has one
  transformer and uses it for both sampling modes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

# Bump when anything below changes the saved model, so existing copies are rebuilt.
# 3: the real repos' layout and file formats (ByteLevel BPE Llama tokenizer, real scheduler config).
TINY_MODEL_VERSION = 3
MARKER_NAME = "framepack_api_tiny.json"
SEED = 20250503
HUNYUAN_DIR = "hunyuan"
SIGLIP_DIR = "flux_redux_bfl"
TRANSFORMER_DIR = "FramePackI2V_HY"

# hunyuanvideo-community/HunyuanVideo, scheduler/scheduler_config.json (minus "_diffusers_version"):
# a static shift of 7.0 and no dynamic shifting, so a `mu` passed to set_timesteps is ignored. The
# same values appear in public training code that reproduces this file for diffusers' HunyuanVideo.
HUNYUAN_SCHEDULER_CONFIG: dict[str, Any] = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "invert_sigmas": False,
    "max_image_seq_len": 4096,
    "max_shift": 1.15,
    "num_train_timesteps": 1000,
    "shift": 7.0,
    "shift_terminal": None,
    "use_beta_sigmas": False,
    "use_dynamic_shifting": False,
    "use_exponential_sigmas": False,
    "use_karras_sigmas": False,
}
# hunyuanvideo-community/HunyuanVideo, model_index.json: the class names the repo declares.
HUNYUAN_MODEL_INDEX: dict[str, Any] = {
    "_class_name": "HunyuanVideoPipeline",
    "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
    "text_encoder": ["transformers", "LlamaModel"],
    "text_encoder_2": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "LlamaTokenizerFast"],
    "tokenizer_2": ["transformers", "CLIPTokenizer"],
    "transformer": ["diffusers", "HunyuanVideoTransformer3DModel"],
    "vae": ["diffusers", "AutoencoderKLHunyuanVideo"],
}
# The FramePack repos' config.json names FramePack's own class; diffusers' Framepack class loads it.
FRAMEPACK_CLASS_NAME = "HunyuanVideoTransformer3DModelPacked"

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
# Llama-3's special tokens (the HunyuanVideo text encoder is llava-llama-3-8b).
LLAMA_BOS, LLAMA_EOS, LLAMA_PAD = "<|begin_of_text|>", "<|end_of_text|>", "<pad>"


def byte_to_unicode() -> dict[int, str]:
    """GPT-2/Llama-3 ByteLevel alphabet: printable bytes stand for themselves, the others are moved to
    code points from 256 up, so every byte is one visible character (a space is 'Ġ')."""
    printable = {*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)}
    table: dict[int, str] = {}
    moved = 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + moved)
            moved += 1
    return table


def build_llama_tokenizer() -> Any:
    """A ByteLevel BPE tokenizer in Llama-3's format: every byte is a token, plus merges of a space with
    each lowercase letter (so words carry the 'Ġ' space marker, as in the real vocabulary)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = byte_to_unicode()
    space = alphabet[ord(" ")]
    merges = [(space, chr(c)) for c in range(ord("a"), ord("z") + 1)]
    pieces = [alphabet[b] for b in range(256)] + [a + b for a, b in merges]
    bpe = Tokenizer(models.BPE(vocab={p: i for i, p in enumerate(pieces)}, merges=merges))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    bpe.decoder = decoders.ByteLevel()
    bpe.add_special_tokens([LLAMA_BOS, LLAMA_EOS, LLAMA_PAD])
    bpe.post_processor = processors.TemplateProcessing(
        single=f"{LLAMA_BOS} $A", pair=f"{LLAMA_BOS} $A {LLAMA_BOS} $B",
        special_tokens=[(LLAMA_BOS, bpe.token_to_id(LLAMA_BOS))])
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token=LLAMA_BOS, eos_token=LLAMA_EOS, pad_token=LLAMA_PAD,
        padding_side="right",  # the pipeline assumes right padding
        model_max_length=LLAMA_CONTEXT)


def _clip_vocab() -> dict[str, int]:
    # CLIP's BPE marks word ends with "</w>"; single characters in both forms tokenize any ASCII text,
    # everything else maps to the unknown token.
    specials = ["<|startoftext|>", "<|endoftext|>"]
    chars = [chr(c) for c in range(33, 127)]
    return {tok: i for i, tok in enumerate(specials + chars + [f"{c}</w>" for c in chars])}


def build_clip_tokenizer() -> Any:
    from transformers import CLIPTokenizer

    return CLIPTokenizer(
        vocab=_clip_vocab(),
        merges=[],
        unk_token="<|endoftext|>",
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=CLIP_CONTEXT,
    )


def build_tiny_components() -> dict[str, Any]:
    """Every pipeline component with random weights (deterministic for SEED), keyed by pipeline name."""
    from diffusers import (
        AutoencoderKLHunyuanVideo,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoFramepackTransformer3DModel,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        LlamaConfig,
        LlamaModel,
        SiglipImageProcessor,
        SiglipVisionConfig,
        SiglipVisionModel,
    )

    tokenizer = build_llama_tokenizer()
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
        scheduler_kwargs = {k: v for k, v in HUNYUAN_SCHEDULER_CONFIG.items() if not k.startswith("_")}
        scheduler = FlowMatchEulerDiscreteScheduler(**scheduler_kwargs)
        text_encoder = LlamaModel(
            LlamaConfig(
                vocab_size=len(tokenizer),
                hidden_size=LLAMA_HIDDEN,
                intermediate_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                num_key_value_heads=2,
                max_position_embeddings=LLAMA_CONTEXT,
                pad_token_id=tokenizer.pad_token_id,
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
    feature_extractor = SiglipImageProcessor(
        size={"height": SIGLIP_IMAGE, "width": SIGLIP_IMAGE},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return {
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "transformer": transformer,
        "vae": vae,
        "scheduler": scheduler,
        "text_encoder_2": text_encoder_2,
        "tokenizer_2": build_clip_tokenizer(),
        "image_encoder": image_encoder,
        "feature_extractor": feature_extractor,
    }


def build_tiny_pipeline() -> Any:
    """The tiny pipeline in memory (not through the saved files: use ``load_model`` for that)."""
    from diffusers import HunyuanVideoFramepackPipeline

    return HunyuanVideoFramepackPipeline(**build_tiny_components())


def _edit_json(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data, indent=2, sort_keys=True))


def build_tiny_model(path: Path) -> None:
    """Build the tiny model and save it into ``path`` in the real repos' layout (plus a marker file)."""
    parts = build_tiny_components()
    hunyuan, siglip, transformer = path / HUNYUAN_DIR, path / SIGLIP_DIR, path / TRANSFORMER_DIR
    for name in ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "vae", "scheduler"):
        parts[name].save_pretrained(hunyuan / name)
    # The real tokenizer_config.json names the Llama class; transformers 5 reads that as a reason to
    # swap the tokenizer.json's ByteLevel pre-tokenizer for Metaspace (see loader.load_llama_tokenizer).
    _edit_json(hunyuan / "tokenizer" / "tokenizer_config.json", tokenizer_class="LlamaTokenizerFast")
    (hunyuan / "scheduler" / "scheduler_config.json").write_text(
        json.dumps(HUNYUAN_SCHEDULER_CONFIG, indent=2, sort_keys=True))
    (hunyuan / "model_index.json").write_text(json.dumps(HUNYUAN_MODEL_INDEX, indent=2, sort_keys=True))
    parts["image_encoder"].save_pretrained(siglip / "image_encoder")
    parts["feature_extractor"].save_pretrained(siglip / "feature_extractor")
    parts["transformer"].save_pretrained(transformer)
    _edit_json(transformer / "config.json", _class_name=FRAMEPACK_CLASS_NAME)
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
