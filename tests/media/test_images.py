"""Buckets, resize + centre crop, and normalising uploads."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from framepack_api.media.images import (
    BUCKETS_640,
    bucket_options,
    find_nearest_bucket,
    load_rgb,
    resize_and_center_crop,
)


def test_640_list_is_framepacks() -> None:
    assert bucket_options(640) == BUCKETS_640
    assert len(BUCKETS_640) == 14
    assert all(h * w <= 640 * 640 * 1.02 for h, w in BUCKETS_640)


@pytest.mark.parametrize("resolution", [64, 96, 128, 320, 480, 640, 720, 960, 1280])
def test_buckets_are_multiples_of_16_and_scale(resolution: int) -> None:
    buckets = bucket_options(resolution)
    assert buckets and len(set(buckets)) == len(buckets)
    assert all(h % 16 == 0 and w % 16 == 0 and h >= 16 and w >= 16 for h, w in buckets)
    mean_side = np.mean([np.sqrt(h * w) for h, w in buckets])
    assert abs(mean_side - resolution) / resolution < 0.12


@pytest.mark.parametrize(
    ("h", "w", "expected"),
    [
        (480, 832, (480, 832)),  # an exact bucket
        (500, 800, (512, 768)),
        (1080, 1920, (480, 832)),  # 16:9 landscape
        (1920, 1080, (832, 480)),  # 9:16 portrait
        (1000, 1000, (640, 608)),  # square: two equally near buckets, the later one wins (as FramePack)
        (100, 1000, (416, 960)),  # wider than every bucket
        (3000, 400, (960, 416)),
    ],
)
def test_nearest_bucket_640(h: int, w: int, expected: tuple[int, int]) -> None:
    assert find_nearest_bucket(h, w, 640) == expected


def test_nearest_bucket_other_resolution_keeps_orientation() -> None:
    lh, lw = find_nearest_bucket(1080, 1920, 128)
    ph, pw = find_nearest_bucket(1920, 1080, 128)
    assert lw > lh and ph > pw
    assert (lh, lw) in bucket_options(128)


def test_nearest_bucket_rejects_empty() -> None:
    with pytest.raises(ValueError):
        find_nearest_bucket(0, 10)


def test_resize_and_center_crop_keeps_the_centre() -> None:
    # 300×100: red | green centre stripe | blue. Cropping to a square keeps the green middle.
    arr = np.zeros((100, 300, 3), np.uint8)
    arr[:, :100] = (255, 0, 0)
    arr[:, 100:200] = (0, 255, 0)
    arr[:, 200:] = (0, 0, 255)
    out = resize_and_center_crop(Image.fromarray(arr), 64, 64)
    assert out.size == (64, 64)
    px = np.asarray(out)
    assert px[32, 32].tolist() == [0, 255, 0]
    assert px[:, 2:-2, 1].min() > 200  # nothing of the red/blue sides survives


@pytest.mark.parametrize(("src", "dst"),
                         [((97, 61), (48, 32)), ((10, 10), (64, 80)), ((640, 480), (640, 480))])
def test_resize_and_center_crop_sizes(src: tuple[int, int], dst: tuple[int, int]) -> None:
    assert resize_and_center_crop(Image.new("RGB", src), *dst).size == dst


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 10, 20))  # white on the left edge
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif, quality=95)
    buf.seek(0)
    with Image.open(buf) as loaded:
        out = load_rgb(loaded)
    assert out.size == (20, 40)
    px = np.asarray(out)
    assert px[2, 10].mean() > 200 and px[-3, 10].mean() < 50  # the left edge is now the top


def test_rgba_is_flattened_onto_white() -> None:
    img = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    img.putpixel((0, 0), (255, 0, 0, 255))
    img.putpixel((1, 0), (0, 0, 0, 128))
    out = load_rgb(img)
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (255, 0, 0)
    assert out.getpixel((3, 3)) == (255, 255, 255)
    half = out.getpixel((1, 0))
    assert isinstance(half, tuple)
    assert all(abs(c - 127) <= 2 for c in half)  # 50% black over white


def test_la_and_palette_transparency_are_flattened() -> None:
    la = Image.new("LA", (2, 2), (0, 0))
    assert load_rgb(la).getpixel((0, 0)) == (255, 255, 255)
    pal = Image.new("P", (2, 2), 1)
    pal.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    pal.info["transparency"] = 1
    assert load_rgb(pal).getpixel((0, 0)) == (255, 255, 255)
    opaque = Image.new("P", (2, 2), 1)
    opaque.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    assert load_rgb(opaque).getpixel((0, 0)) == (10, 20, 30)


def test_grayscale_and_cmyk_become_rgb() -> None:
    assert load_rgb(Image.new("L", (2, 2), 77)).getpixel((0, 0)) == (77, 77, 77)
    assert load_rgb(Image.new("CMYK", (2, 2))).mode == "RGB"
