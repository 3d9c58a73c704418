"""bench/gpu.py --tiny: the GPU benchmark's code path (full memory-mode matrix, the service's own
generate_video) on the tiny model and the CPU, as a subprocess; its printed figures must parse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_bench_tiny_prints_parsable_figures() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p)}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--tiny", "--json"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=280, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert "job: bucket 64, window 9, 1 section(s) = 37 frames, 1 steps" in proc.stdout
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["mode", "cache", "cap_gb"])
    columns = lines[header].split()
    table = [dict(zip(columns, line.split(), strict=True)) for line in lines[header + 1:]
             if not line.startswith("JSON ")]
    rows = [json.loads(line[len("JSON "):]) for line in lines if line.startswith("JSON ")]
    # Every mode with and without the cache; offload (model-level) needs CUDA and says so.
    assert [(r["mode"], r["cache"], r["status"]) for r in rows] == [
        ("gpu", "off", "ok"), ("gpu", "on", "ok"),
        ("offload", "off", "skip:needs-CUDA"), ("offload", "on", "skip:needs-CUDA"),
        ("group", "off", "ok"), ("group", "on", "ok"), ("leaf", "off", "ok"), ("leaf", "on", "ok")]
    assert [(t["mode"], t["cache"], t["status"]) for t in table] == [
        (r["mode"], r["cache"], r["status"]) for r in rows]
    for row, printed in zip(rows, table, strict=True):
        if row["status"] != "ok":
            assert printed["s_per_step"] == printed["peak_gib"] == "-"
            continue
        assert row["frames"] == 37
        assert row["cache_kind"] == ("first_block_cache" if row["cache"] == "on" else "none")
        for key in ("s_per_step", "s_per_frame", "decode_s"):
            assert float(printed[key]) > 0 and abs(float(printed[key]) - row[key]) < 1e-3, key
        assert printed["peak_gib"] == "-"  # no VRAM on the CPU
        assert printed["resident"] == ("0/2" if row["mode"] == "group" else "-")
