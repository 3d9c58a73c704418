"""MP4 writing/reading with PyAV and thumbnails."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from framepack_api.media.video import atomic_path, read_frames, read_mp4_info, write_mp4, write_thumbnail


def noise(t: int = 9, h: int = 64, w: int = 96, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((t, h, w, 3)) * 255).astype(np.uint8)


def smooth(t: int = 9, h: int = 64, w: int = 96) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    frames = [np.stack([(x * 2 + i * 8) % 256, (y * 3) % 256, np.full_like(x, 128)], -1) for i in range(t)]
    return np.array(frames, dtype=np.uint8)


def test_round_trip_frames_size_fps_metadata(tmp_path: Path) -> None:
    params = {"prompt": "ダンス", "seed": 31337, "steps": 25}
    path = tmp_path / "v.mp4"
    write_mp4(noise(13), path, fps=30, crf=16, metadata={"comment": json.dumps(params, ensure_ascii=False)})
    info = read_mp4_info(path)
    assert (info["frames"], info["width"], info["height"], info["fps"]) == (13, 96, 64, 30.0)
    assert json.loads(info["metadata"]["comment"]) == params


def test_custom_metadata_key(tmp_path: Path) -> None:
    write_mp4(noise(3), tmp_path / "v.mp4", metadata={"framepack_params": "x", "description": "y"})
    meta = read_mp4_info(tmp_path / "v.mp4")["metadata"]
    assert meta["framepack_params"] == "x" and meta["description"] == "y"


def test_pil_frames_and_pixels_survive(tmp_path: Path) -> None:
    frames = smooth(5)
    write_mp4([Image.fromarray(f) for f in frames], tmp_path / "v.mp4", crf=0)
    decoded = read_frames(tmp_path / "v.mp4")
    assert decoded.shape == frames.shape
    # yuv420p subsamples chroma, so even crf 0 is not bit-exact; a smooth image stays close.
    assert np.abs(decoded.astype(int) - frames.astype(int)).mean() < 6


def test_crf_changes_file_size(tmp_path: Path) -> None:
    write_mp4(noise(9), tmp_path / "hi.mp4", crf=10)
    write_mp4(noise(9), tmp_path / "lo.mp4", crf=40)
    assert (tmp_path / "hi.mp4").stat().st_size > 2 * (tmp_path / "lo.mp4").stat().st_size


def test_fps_is_written(tmp_path: Path) -> None:
    write_mp4(noise(4), tmp_path / "v.mp4", fps=24)
    assert read_mp4_info(tmp_path / "v.mp4")["fps"] == 24.0


def test_bad_input_is_rejected_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(AssertionError):
        write_mp4(noise(2, 63, 96), tmp_path / "odd.mp4")
    with pytest.raises(ValueError):
        write_mp4(noise(2).astype(np.float32), tmp_path / "f.mp4")
    with pytest.raises(ValueError):
        write_mp4(noise(0), tmp_path / "empty.mp4")
    with pytest.raises(ValueError):
        write_mp4(noise(2), tmp_path / "crf.mp4", crf=60)
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_publishes_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
        assert not target.exists()  # invisible until complete
    assert target.read_bytes() == b"whole"
    assert list(tmp_path.iterdir()) == [target]


def test_overwrite_replaces(tmp_path: Path) -> None:
    write_mp4(noise(3), tmp_path / "v.mp4")
    write_mp4(noise(5), tmp_path / "v.mp4")
    assert read_mp4_info(tmp_path / "v.mp4")["frames"] == 5
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]


def test_thumbnail_is_bounded_and_not_enlarged(tmp_path: Path) -> None:
    write_thumbnail(noise(1, 480, 640)[0], tmp_path / "big.jpg")
    with Image.open(tmp_path / "big.jpg") as img:
        assert img.size == (320, 240) and img.format == "JPEG"
    write_thumbnail(Image.fromarray(noise(1, 64, 96)[0]), tmp_path / "small.jpg", max_side=320)
    with Image.open(tmp_path / "small.jpg") as img:
        assert img.size == (96, 64)
