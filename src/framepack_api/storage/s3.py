"""Jobs' files in an S3-compatible object store (AWS S3, MinIO, R2, GCS's S3 API), through boto3.

The layout of keys is the local one (see framepack_api.storage) under ``s3://bucket/prefix/``.
Credentials come from boto3's own chain: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE and
the shared config files, instance and container roles. A PUT replaces an object whole, so readers
never see half a preview; an attempt's result is published only when the fenced completion records
its keys, exactly as with the local directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from framepack_api.storage.local import ScratchDirs

READ_CHUNK = 1024 * 1024
DELETE_BATCH = 1000  # the most keys one DeleteObjects request takes
MISSING = ("404", "NoSuchKey", "NotFound")
NO_BATCH_DELETE = ("NotImplemented", "InvalidArgument", "MalformedXML")


def make_client(endpoint_url: str | None) -> Any:
    # Path-style addressing for custom endpoints: MinIO and loopback servers have no per-bucket hosts.
    config = Config(s3={"addressing_style": "path"} if endpoint_url else {},
                    retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=32)
    # boto3 reads AWS_DEFAULT_REGION itself; AWS_REGION is the name most other SDKs use.
    region = os.environ.get("AWS_REGION") or None
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


class S3Storage(ScratchDirs):
    def __init__(self, bucket: str, prefix: str, *, scratch: Path, endpoint_url: str | None = None,
                 client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client if client is not None else make_client(endpoint_url)
        self.batch_delete = True  # until the store says it has no DeleteObjects
        self.root = scratch.resolve()
        (self.root / "work").mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"S3Storage(s3://{self.bucket}/{self.prefix})"

    # -- keys --------------------------------------------------------------------------------

    def object_key(self, key: str) -> str:
        """The object's full key; refuses keys that could leave the prefix or are not relative."""
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"path outside storage: {key}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _dir(self, relative: str) -> str:
        return self.object_key(relative) + "/"

    # -- writes ------------------------------------------------------------------------------

    def write_input(self, job_id: str, name: str, data: bytes) -> str:
        key = f"inputs/{job_id}/{name}"
        self.client.put_object(Bucket=self.bucket, Key=self.object_key(key), Body=data)
        return key

    def put_file(self, key: str, path: Path) -> None:
        self.client.upload_file(str(path), self.bucket, self.object_key(key))

    def save_back(self, key: str, path: Path) -> None:
        self.put_file(key, path)

    def save_preview(self, job_id: str, produced: Path, name: str) -> str:
        key = f"previews/{job_id}/{name}"
        self.put_file(key, produced)
        produced.unlink(missing_ok=True)
        return key

    def stage_result(self, job_id: str, attempt: int, files: dict[str, Path]) -> dict[str, str]:
        """Upload a finished attempt's files under outputs/<job_id>/<attempt>/; nothing is served
        from there until the fenced completion records these keys in the row."""
        self.discard_result(job_id, attempt)  # a crashed earlier run of this very attempt
        staged = {}
        for name, path in files.items():
            key = f"outputs/{job_id}/{attempt}/{path.name}"
            self.put_file(key, path)
            staged[name] = key
        return staged

    # -- removal -----------------------------------------------------------------------------

    def _keys_under(self, prefix: str) -> Iterator[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            for item in page.get("Contents", ()):
                yield item["Key"]

    def _delete(self, keys: Iterator[str] | list[str]) -> None:
        batch: list[str] = []
        for key in keys:
            batch.append(key)
            if len(batch) == DELETE_BATCH:
                self._delete_batch(batch)
                batch = []
        if batch:
            self._delete_batch(batch)

    def _delete_batch(self, keys: list[str]) -> None:
        if self.batch_delete:
            try:
                answer = self.client.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": key} for key in keys], "Quiet": True})
            except ClientError as exc:
                # GCS's S3 API has no multi-object delete: fall back to one request per object.
                if exc.response.get("Error", {}).get("Code") not in NO_BATCH_DELETE:
                    raise
                self.batch_delete = False
            else:
                errors = answer.get("Errors") or []
                if errors:
                    raise OSError(f"could not delete {len(errors)} object(s), e.g. {errors[0]}")
                return
        for key in keys:
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def discard_result(self, job_id: str, attempt: int) -> None:
        self._delete(list(self._keys_under(self._dir(f"outputs/{job_id}/{attempt}"))))

    def output_attempts(self, job_id: str) -> list[int]:
        base = self._dir(f"outputs/{job_id}")
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base, Delimiter="/")
        found = []
        for page in pages:
            for common in page.get("CommonPrefixes", ()):
                name = common["Prefix"][len(base):].rstrip("/")
                if name.isdigit():
                    found.append(int(name))
        return sorted(found)

    def keep_only_attempt(self, job_id: str, attempt: int) -> None:
        """After a completion: remove what other attempts of the job uploaded (one killed between
        its upload and its completion, say). Only attempt prefixes are touched."""
        for other in self.output_attempts(job_id):
            if other != attempt:
                self.discard_result(job_id, other)

    def remove_outputs(self, job_id: str) -> None:
        self._delete(list(self._keys_under(self._dir(f"outputs/{job_id}"))))

    def remove_job(self, job_id: str) -> None:
        for area in ("inputs", "outputs", "previews"):
            self._delete(list(self._keys_under(self._dir(f"{area}/{job_id}"))))
        for work in (self.root / "work").glob(f"{job_id}-*"):
            attempt = work.name.rsplit("-", 1)[1]
            if attempt.isdigit():
                self.discard_work(job_id, int(attempt))

    # -- reads -------------------------------------------------------------------------------

    def fetch_inputs(self, inputs: dict[str, str], into: Path) -> dict[str, Path]:
        """Download a job's inputs into its work directory: workers need no shared disk."""
        into.mkdir(parents=True, exist_ok=True)
        local = {}
        for name, key in inputs.items():
            path = into / Path(key).name
            self.client.download_file(self.bucket, self.object_key(key), str(path))
            local[name] = path
        return local

    def local_path(self, key: str) -> Path | None:
        return None

    def size(self, key: str) -> int | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in MISSING:
                return None
            raise
        return int(head["ContentLength"])

    def read_range(self, key: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``start``..``end`` inclusive, streamed in chunks."""
        answer = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key), Range=f"bytes={start}-{end}")
        body = answer["Body"]
        try:
            yield from body.iter_chunks(READ_CHUNK)
        finally:
            body.close()

    def read_bytes(self, key: str) -> bytes:
        body = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()

    def presigned_url(self, key: str, *, seconds: int, filename: str | None, media_type: str) -> str:
        params = {"Bucket": self.bucket, "Key": self.object_key(key), "ResponseContentType": media_type}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        return str(self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=seconds))
