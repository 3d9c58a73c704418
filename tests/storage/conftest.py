"""A real S3-compatible server on loopback for the whole session: moto's standalone server, spoken to
over HTTP by boto3 in the tests, in `framepack-api serve` and in standalone workers alike."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "framepack-test", "AWS_SECRET_ACCESS_KEY": "framepack-test-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class S3Server:
    url: str

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                            config=Config(s3={"addressing_style": "path"}))

    def new_bucket(self) -> str:
        """Each test its own bucket, so that listing a bucket shows only that test's objects."""
        name = f"fp-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", ()))

    def read(self, bucket: str, key: str) -> bytes:
        return bytes(self.client().get_object(Bucket=bucket, Key=key)["Body"].read())

    def env(self, bucket: str, prefix: str = "fp") -> dict[str, str]:
        """What a server or worker process needs to use this store."""
        return {"FRAMEPACK_API_STORAGE_URL": f"s3://{bucket}/{prefix}", "FRAMEPACK_API_S3_ENDPOINT_URL": self.url,
                **CREDENTIALS}


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    # The dev extra brings boto3 and moto[server]; without them this fails rather than skips, so a
    # broken set-up cannot pass the object-storage tests silently.
    import moto.server as moto_server
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield S3Server(f"http://{host}:{port}")
    server.stop()
