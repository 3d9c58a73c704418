"""Where jobs' files live: a local directory (the default) or any S3-compatible object store.

Both keep the same layout of keys relative to their root, and the database stores only those keys,
so a row reads the same whichever store holds its files:

    inputs/<job_id>/<name>               written by the API at submit
    outputs/<job_id>/<attempt>/<file>    written by the worker of that attempt, published by the
                                         fenced completion that records the keys in the row
    previews/<job_id>/preview.jpg        the newest latent preview; partial.mp4, the video so far

Work directories (``work/<job_id>-<attempt>/``) are always local scratch on the worker's machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from framepack_api.settings import Settings
from framepack_api.storage.local import LocalStorage

__all__ = ["LocalStorage", "Storage", "create_storage", "parse_storage_url"]


class Storage(Protocol):
    """What the API, the workers, the reaper and retention ask of a store. Keys are relative."""

    # A local directory in both stores: the work directories (and, for LocalStorage, everything).
    root: Path

    def write_input(self, job_id: str, name: str, data: bytes) -> str: ...

    def fetch_inputs(self, inputs: dict[str, str], into: Path) -> dict[str, Path]: ...

    def save_back(self, key: str, path: Path) -> None: ...

    def work_dir(self, job_id: str, attempt: int) -> Path: ...

    def discard_work(self, job_id: str, attempt: int) -> None: ...

    def save_preview(self, job_id: str, produced: Path, name: str) -> str: ...

    def stage_result(self, job_id: str, attempt: int, files: dict[str, Path]) -> dict[str, str]: ...

    def discard_result(self, job_id: str, attempt: int) -> None: ...

    def keep_only_attempt(self, job_id: str, attempt: int) -> None: ...

    def output_attempts(self, job_id: str) -> list[int]: ...

    def remove_outputs(self, job_id: str) -> None: ...

    def remove_job(self, job_id: str) -> None: ...

    def local_path(self, key: str) -> Path | None: ...

    def size(self, key: str) -> int | None: ...

    def read_range(self, key: str, start: int, end: int) -> Iterator[bytes]: ...

    def read_bytes(self, key: str) -> bytes: ...

    def put_file(self, key: str, path: Path) -> None: ...

    def presigned_url(self, key: str, *, seconds: int, filename: str | None, media_type: str) -> str: ...


def preview_key(job_id: str, name: str) -> str:
    return f"previews/{job_id}/{name}"


def parse_storage_url(url: str) -> tuple[str, str, str]:
    """``("file", directory, "")`` or ``("s3", bucket, prefix)``; empty means the local default."""
    if not url:
        return "file", "", ""
    parts = urlsplit(url)
    if parts.scheme == "file":
        directory = url[len("file://"):]
        if not directory:
            raise ValueError("a file:// storage URL needs a directory: file:///srv/framepack/files")
        return "file", directory, ""
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError("an s3:// storage URL needs a bucket: s3://bucket/prefix")
        return "s3", parts.netloc, parts.path.strip("/")
    raise ValueError(f"storage URL must be file:///directory or s3://bucket/prefix, not {url!r}")


def create_storage(settings: Settings) -> Storage:
    scheme, bucket, prefix = parse_storage_url(settings.storage_url)
    if scheme == "s3":
        from framepack_api.storage.s3 import S3Storage  # boto3 is the optional `s3` extra

        return S3Storage(bucket, prefix, scratch=settings.storage_dir, endpoint_url=settings.s3_endpoint_url or None)
    return LocalStorage(settings.storage_dir)
