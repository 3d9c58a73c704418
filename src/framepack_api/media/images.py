"""Input images: FramePack's resolution buckets, resize + center crop, and normalising uploads to RGB.

FramePack picks the output size from a fixed list of (height, width) buckets of about 640×640 pixels,
choosing the one whose aspect ratio is nearest to the input's. Other resolutions here use the same list
scaled to the requested size and snapped to multiples of 16 (the pipeline needs that).
"""

from __future__ import annotations

from functools import lru_cache

from PIL import Image, ImageOps

BASE_RESOLUTION = 640
MULTIPLE = 16

# FramePack's 640 bucket list (height, width), portrait to landscape in FramePack's order.
BUCKETS_640: tuple[tuple[int, int], ...] = (
    (416, 960),
    (448, 864),
    (480, 832),
    (512, 768),
    (544, 704),
    (576, 672),
    (608, 640),
    (640, 608),
    (672, 576),
    (704, 544),
    (768, 512),
    (832, 480),
    (864, 448),
    (960, 416),
)


def _snap(value: float) -> int:
    return max(MULTIPLE, round(value / MULTIPLE) * MULTIPLE)


@lru_cache(maxsize=64)
def bucket_options(resolution: int = BASE_RESOLUTION) -> tuple[tuple[int, int], ...]:
    """The (height, width) buckets for ``resolution``: FramePack's list, scaled and snapped to 16."""
    if resolution <= 0:
        raise ValueError(f"resolution must be positive, got {resolution}")
    if resolution == BASE_RESOLUTION:
        return BUCKETS_640
    scale = resolution / BASE_RESOLUTION
    seen: list[tuple[int, int]] = []
    for h, w in BUCKETS_640:
        bucket = (_snap(h * scale), _snap(w * scale))
        # Small resolutions collapse neighbouring buckets onto the same size; keep the first.
        if bucket not in seen:
            seen.append(bucket)
    return tuple(seen)


def find_nearest_bucket(h: int, w: int, resolution: int = BASE_RESOLUTION) -> tuple[int, int]:
    """The bucket whose aspect ratio is closest to h:w.

    Like FramePack, compares |h·bw − w·bh| (cross-multiplied aspect ratios, no division) and on a tie
    takes the later bucket in the list.
    """
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive, got {w}x{h}")
    best = BUCKETS_640[0]
    best_metric: float = float("inf")
    for bh, bw in bucket_options(resolution):
        metric = abs(h * bw - w * bh)
        if metric <= best_metric:
            best_metric = metric
            best = (bh, bw)
    return best


def resize_and_center_crop(img: Image.Image, width: int, height: int) -> Image.Image:
    """Scale ``img`` so it covers width×height, then cut the centre out (no padding, no distortion)."""
    if img.width == width and img.height == height:
        return img.copy()
    scale = max(width / img.width, height / img.height)
    # Rounding up ensures the scaled image is never a pixel short of the target.
    new_w = max(width, round(img.width * scale))
    new_h = max(height, round(img.height * scale))
    resized = img.resize((new_w, new_h), Image.Resampling.LANCZOS)
    left = (new_w - width) // 2
    top = (new_h - height) // 2
    return resized.crop((left, top, left + width, top + height))


def load_rgb(image: Image.Image) -> Image.Image:
    """An upload as plain RGB: EXIF orientation applied, any transparency flattened onto white."""
    img = ImageOps.exif_transpose(image) or image
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    if img.mode != "RGB":
        return img.convert("RGB")
    # Make sure the caller owns a loaded image, independent of the source file handle.
    return img.copy() if img is image else img
