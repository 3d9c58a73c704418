"""What object storage costs a result: upload at publish, download at /result. Figures, never pass/fail.

For results of several sizes (a tiny-model MP4 is a few KiB, a real 5-second 640 px video a few
MiB), times the worker's publish (``stage_result``: a move on a local disk, an upload to S3) and a
whole download read back (``read_range`` over the file or object, what a streamed ``/result``
does), on a LocalStorage directory and on an S3Storage against moto's S3 server started on
loopback in this process. Medians and minimums over N repeats, interleaved; the last column is S3's
median as a ratio to the local directory's in the same run.

moto is a Python server sharing this process's cores: its figures are an upper bound of what the
client side costs, not a measurement of AWS S3, MinIO or R2 (which add network latency instead).

    PYTHONPATH=src .venv/bin/python bench/storage.py              # sizes 64 KiB, 1 MiB, 16 MiB
    PYTHONPATH=src .venv/bin/python bench/storage.py --repeats 5  # fewer repeats
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `framepack_api` importable from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from framepack_api.storage import Storage
from framepack_api.storage.local import LocalStorage

SIZES = {"64KiB": 64 * 1024, "1MiB": 1024 * 1024, "16MiB": 16 * 1024 * 1024}


def s3_storage(root: Path) -> tuple[Any, Storage]:
    import boto3
    from botocore.config import Config
    from moto.server import ThreadedMotoServer

    from framepack_api.storage.s3 import S3Storage

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
                          aws_access_key_id="bench", aws_secret_access_key="bench",
                          config=Config(s3={"addressing_style": "path"}))
    client.create_bucket(Bucket="bench")
    return server, S3Storage("bench", "fp", scratch=root, client=client)


def publish_and_download(storage: Storage, size: int, n: int) -> tuple[float, float]:
    """One result: written in a work dir, staged (moved or uploaded), read back whole. Seconds each."""
    job = f"job-{n}"
    work = storage.work_dir(job, 1)
    (work / "video.mp4").write_bytes(os.urandom(size))
    started = time.perf_counter()
    staged = storage.stage_result(job, 1, {"video": work / "video.mp4"})
    published = time.perf_counter()
    got = sum(len(chunk) for chunk in storage.read_range(staged["video"], 0, size - 1))
    downloaded = time.perf_counter()
    assert got == size, (got, size)
    storage.remove_job(job)
    return (published - started), (downloaded - published)


def timed(stores: dict[str, Storage], size: int, repeats: int) -> dict[str, tuple[list[float], list[float]]]:
    out: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in stores}
    names = list(stores)
    for n in range(repeats):
        for name in names[n % 2:] + names[:n % 2]:  # alternate who goes first, so drift hits both
            up, down = publish_and_download(stores[name], size, n)
            out[name][0].append(up)
            out[name][1].append(down)
    return out


def ms(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1000:9.2f} {min(xs) * 1000:9.2f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        server, s3 = s3_storage(Path(tmp) / "s3-scratch")
        stores = {"local": LocalStorage(Path(tmp) / "local"), "s3": s3}
        try:
            print(f"load average {os.getloadavg()[0]:.1f}; {args.repeats} repeats; milliseconds")
            print(f"{'size':>6} {'store':>6} {'upload p50':>10} {'min':>9} {'download p50':>12} {'min':>9} "
                  f"{'total x local':>13}")
            for label, size in SIZES.items():
                figures = timed(stores, size, args.repeats)
                local_total = statistics.median([a + b for a, b in zip(*figures["local"], strict=True)])
                for name, (ups, downs) in figures.items():
                    total = statistics.median([a + b for a, b in zip(ups, downs, strict=True)])
                    print(f"{label:>6} {name:>6} {ms(ups)}    {ms(downs)} {total / local_total:13.1f}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
