"""Files of jobs under one local root: inputs/<job_id>/, outputs/<job_id>/<attempt>/, work/<job_id>-<attempt>/.

Paths stored in the database are relative to the root, so a data directory can move. Results go
to a directory of their attempt: an attempt that loses its lease can still write its files, but
never over the files of the attempt whose fenced completion recorded its paths in the row.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

READ_CHUNK = 1024 * 1024


class ScratchDirs:
    """Work directories of running attempts: local to the worker's machine, whatever the store."""

    root: Path

    def work_dir(self, job_id: str, attempt: int) -> Path:
        path = self.root / "work" / f"{job_id}-{attempt}"
        shutil.rmtree(path, ignore_errors=True)  # a crashed earlier run of this attempt
        path.mkdir(parents=True)
        return path

    def discard_work(self, job_id: str, attempt: int) -> None:
        shutil.rmtree(self.root / "work" / f"{job_id}-{attempt}", ignore_errors=True)


class LocalStorage(ScratchDirs):
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        for sub in ("inputs", "outputs", "work", "previews"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def input_dir(self, job_id: str) -> Path:
        return self.root / "inputs" / job_id

    def output_dir(self, job_id: str) -> Path:
        return self.root / "outputs" / job_id

    def preview_dir(self, job_id: str) -> Path:
        return self.root / "previews" / job_id

    def save_preview(self, job_id: str, produced: Path, name: str) -> str:
        """Replace the job's newest preview file atomically; readers never see half a file."""
        directory = self.preview_dir(job_id)
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / name
        os.replace(produced, target)
        return self.relative(target)

    def write_input(self, job_id: str, name: str, data: bytes) -> str:
        """Write atomically; returns the path relative to the root."""
        directory = self.input_dir(job_id)
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / name
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
        return self.relative(target)

    def attempt_output_dir(self, job_id: str, attempt: int) -> Path:
        return self.output_dir(job_id) / str(attempt)

    def stage_result(self, job_id: str, attempt: int, files: dict[str, Path]) -> dict[str, str]:
        """Move a finished attempt's files to outputs/<job_id>/<attempt>/; returns their relative paths.

        Nothing is served from there until the fenced completion records these paths in the row.
        """
        out = self.attempt_output_dir(job_id, attempt)
        shutil.rmtree(out, ignore_errors=True)  # a crashed earlier run of this very attempt
        out.mkdir(parents=True)
        staged = {}
        for name, path in files.items():
            target = out / path.name
            os.replace(path, target)
            staged[name] = self.relative(target)
        return staged

    def discard_result(self, job_id: str, attempt: int) -> None:
        """An attempt that lost its job removes what it staged."""
        shutil.rmtree(self.attempt_output_dir(job_id, attempt), ignore_errors=True)

    def keep_only_attempt(self, job_id: str, attempt: int) -> None:
        """After a completion: remove what other attempts of the job left (one killed between
        staging and its failed completion, say). Only attempt directories are touched."""
        out = self.output_dir(job_id)
        if not out.is_dir():
            return
        for entry in out.iterdir():
            if entry.is_dir() and entry.name.isdigit() and entry.name != str(attempt):
                shutil.rmtree(entry, ignore_errors=True)

    def relative(self, path: Path) -> str:
        return str(path.resolve().relative_to(self.root))

    def resolve(self, relative: str) -> Path:
        path = (self.root / relative).resolve()
        if self.root not in path.parents:
            raise ValueError(f"path outside storage: {relative}")
        return path

    def output_attempts(self, job_id: str) -> list[int]:
        out = self.output_dir(job_id)
        if not out.is_dir():
            return []
        return sorted(int(entry.name) for entry in out.iterdir() if entry.is_dir() and entry.name.isdigit())

    def remove_outputs(self, job_id: str) -> None:
        shutil.rmtree(self.output_dir(job_id), ignore_errors=True)

    def remove_job(self, job_id: str) -> None:
        shutil.rmtree(self.input_dir(job_id), ignore_errors=True)
        shutil.rmtree(self.output_dir(job_id), ignore_errors=True)
        shutil.rmtree(self.preview_dir(job_id), ignore_errors=True)
        for work in (self.root / "work").glob(f"{job_id}-*"):
            shutil.rmtree(work, ignore_errors=True)

    # -- what the worker and the downloads ask of any store (see framepack_api.storage.Storage) --

    def fetch_inputs(self, inputs: dict[str, str], into: Path) -> dict[str, Path]:
        """The stored files themselves: the worker reads them in place (a backend may update one)."""
        return {name: self.resolve(key) for name, key in inputs.items()}

    def save_back(self, key: str, path: Path) -> None:
        """Inputs are read in place here, so an updated one is already stored."""
        target = self.resolve(key)
        if path.resolve() != target:
            self.put_file(key, path)

    def local_path(self, key: str) -> Path | None:
        return self.resolve(key)

    def size(self, key: str) -> int | None:
        try:
            return self.resolve(key).stat().st_size
        except FileNotFoundError:
            return None

    def read_range(self, key: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``start``..``end`` inclusive, in chunks."""
        with self.resolve(key).open("rb") as f:
            f.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = f.read(min(READ_CHUNK, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk

    def read_bytes(self, key: str) -> bytes:
        return self.resolve(key).read_bytes()

    def put_file(self, key: str, path: Path) -> None:
        target = self.resolve(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        os.close(fd)
        shutil.copyfile(path, tmp)
        os.replace(tmp, target)

    def presigned_url(self, key: str, *, seconds: int, filename: str | None, media_type: str) -> str:
        raise NotImplementedError("a local directory has no URLs of its own; its files are served by the API")
