"""Latent previews: a small RGB image straight from diffusion latents, without the VAE.

Decoding with the real VAE costs seconds per call on a GPU; a fixed linear map of the latent
channels to RGB costs well under a millisecond and is what FramePack itself shows while sampling.

- HunyuanVideo's VAE has 16 latent channels. ``HUNYUAN_LATENT_RGB`` / ``HUNYUAN_LATENT_RGB_BIAS`` are
  the published least-squares factors (ComfyUI's, used by FramePack's ``vae_decode_fake``) that map
  the *scaled* latents the pipeline samples to RGB in [0, 1].
- Any other channel count (the tiny test model has 4) has no published factors. The fallback shows
  the first three channels (repeated when fewer) as R, G, B, each stretched to [0, 1] by its own
  min/max over the frame: deterministic, and it makes random-weight latents visible at all.

Which frame: a section holds ``latent_window_size`` latent frames. The preview shows the *middle*
one: it is the same choice in both sampling directions (reverse fills the video back to front, so
"newest" is ambiguous) and, unlike the edge frames, it is not pulled towards the neighbouring
section. One frame instead of a strip keeps the image readable at ≤ 512 px wide (a 9-frame strip of
104-latent-pixel frames would have to be shrunk to about 55 % of one latent pixel per pixel).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from framepack_api.media.video import atomic_path

# Rows: latent channels 0..15; columns: contribution to R, G, B.
HUNYUAN_LATENT_RGB: tuple[tuple[float, float, float], ...] = (
    (-0.0395, -0.0331, 0.0445),
    (0.0696, 0.0795, 0.0518),
    (0.0135, -0.0945, -0.0282),
    (0.0108, -0.0250, -0.0765),
    (-0.0209, 0.0032, 0.0224),
    (-0.0804, -0.0254, -0.0639),
    (-0.0991, 0.0271, -0.0669),
    (-0.0646, -0.0422, -0.0400),
    (-0.0696, -0.0595, -0.0894),
    (-0.0799, -0.0208, -0.0375),
    (0.1166, 0.1627, 0.0962),
    (0.1165, 0.0432, 0.0407),
    (-0.2315, -0.1920, -0.1355),
    (-0.0270, 0.0401, -0.0821),
    (-0.0616, -0.0997, -0.0727),
    (0.0249, -0.0469, -0.1703),
)
HUNYUAN_LATENT_RGB_BIAS: tuple[float, float, float] = (0.0259, -0.0192, -0.0761)

MAX_WIDTH = 512  # pixels; previews are pushed to clients at every step and must stay small
MAX_SCALE = 8  # never enlarge a latent pixel beyond the VAE's own spatial factor
JPEG_QUALITY = 80


def latent_frame_to_rgb(frame: torch.Tensor) -> np.ndarray:
    """One latent frame (C, H, W) → uint8 RGB (H, W, 3), by the fixed projection described above.

    The arithmetic runs where the latent lives (the GPU during a real job) and only the small uint8
    image crosses to the host.
    """
    if frame.ndim != 3:
        raise ValueError(f"expected one latent frame (C, H, W), got shape {tuple(frame.shape)}")
    x = frame.detach().float()
    channels = x.shape[0]
    if channels == len(HUNYUAN_LATENT_RGB):
        weight = torch.tensor(HUNYUAN_LATENT_RGB, dtype=x.dtype, device=x.device)  # (C, 3)
        bias = torch.tensor(HUNYUAN_LATENT_RGB_BIAS, dtype=x.dtype, device=x.device)
        rgb = torch.einsum("chw,cr->hwr", x, weight) + bias
    else:
        picked = x[[i % channels for i in range(3)]]  # (3, H, W); channels repeat when C < 3
        low = picked.amin(dim=(1, 2), keepdim=True)
        span = (picked.amax(dim=(1, 2), keepdim=True) - low).clamp_min(1e-6)  # flat channel → black
        rgb = ((picked - low) / span).permute(1, 2, 0)
    rgb8 = (rgb.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return np.ascontiguousarray(rgb8.cpu().numpy())


def preview_size(latent_width: int, latent_height: int, max_width: int = MAX_WIDTH,
                 max_scale: int = MAX_SCALE) -> tuple[int, int]:
    """Pixel size of the preview: an integer upscale of at most ``max_scale`` that fits
    ``max_width``; a latent wider than ``max_width`` is shrunk to exactly ``max_width``."""
    if latent_width <= max_width:
        scale = max(1, min(max_scale, max_width // latent_width))
        return latent_width * scale, latent_height * scale
    return max_width, max(1, round(latent_height * max_width / latent_width))


def preview_image(latents: torch.Tensor, max_width: int = MAX_WIDTH, max_scale: int = MAX_SCALE) -> Image.Image:
    """Pipeline latents (B, C, T, H, W) → the preview of batch item 0's middle frame."""
    if latents.ndim != 5:
        raise ValueError(f"expected latents (B, C, T, H, W), got shape {tuple(latents.shape)}")
    # Select before projecting: only one frame's worth of work and transfer.
    frame = latents[0, :, latents.shape[2] // 2]
    img = Image.fromarray(latent_frame_to_rgb(frame))
    size = preview_size(img.width, img.height, max_width, max_scale)
    # Bilinear: smoother than nearest at ×4–×8 and still ~0.1 ms at these sizes.
    return img.resize(size, Image.Resampling.BILINEAR) if size != img.size else img


def write_preview(latents: torch.Tensor, path: Path, max_width: int = MAX_WIDTH,
                  max_scale: int = MAX_SCALE) -> Path:
    """Write the preview of ``latents`` as a JPEG at ``path`` atomically (temp file + rename)."""
    img = preview_image(latents, max_width, max_scale)
    with atomic_path(path) as tmp:
        img.save(tmp, format="JPEG", quality=JPEG_QUALITY)
    return path
