"""A worker killed between its upload and its fenced completion leaves objects under its attempt's
prefix; the reaper pass, the next completion and retention each remove what is theirs to remove,
on a real S3-compatible server (moto on loopback) and a real SQLite file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pydantic import ValidationError

from framepack_api.api.downloads import byte_range
from framepack_api.backends.base import JobOutput, RunContext
from framepack_api.jobs.db import create_engine, upgrade
from framepack_api.jobs.retention import Policy, Retention, discard_dead_attempts
from framepack_api.jobs.store import Job, JobStore, NewJob
from framepack_api.params import JobType
from framepack_api.settings import Settings
from framepack_api.storage import create_storage
from framepack_api.worker.runner import Worker

from .conftest import S3Server

if TYPE_CHECKING:
    from framepack_api.storage.s3 import S3Storage


def upload_attempt(storage: S3Storage, job: Job) -> dict[str, str]:
    """What a worker does up to the moment before its fenced completion."""
    work = storage.work_dir(job.id, job.attempt)
    (work / "video.mp4").write_bytes(b"mp4 of attempt %d" % job.attempt)
    (work / "thumbnail.jpg").write_bytes(b"jpg of attempt %d" % job.attempt)
    return storage.stage_result(job.id, job.attempt, {"video": work / "video.mp4",
                                                      "thumbnail": work / "thumbnail.jpg"})


def test_killed_uploads_are_removed_by_the_reaper_the_next_completion_and_retention(
        s3: S3Server, tmp_path: Path) -> None:
    from framepack_api.storage.s3 import S3Storage  # boto3: the s3 or dev extra

    bucket = s3.new_bucket()
    storage = S3Storage(bucket, "fp", scratch=tmp_path / "scratch", client=s3.client())
    engine = create_engine(f"sqlite:///{tmp_path / 'jobs.db'}")
    upgrade(engine)
    store = JobStore(engine, lease_seconds=60, max_attempts=3)
    an_hour_later = JobStore(engine, lease_seconds=60, clock=lambda: time.time() + 3600)
    image = storage.write_input("job-1", "image.png", b"png")
    store.submit(NewJob(type=JobType.video, params={"prompt": "p"}, inputs={"image": image}, id="job-1"))
    outputs = "fp/outputs/job-1/"

    # Attempt 1 uploads its result and dies before completing; the reaper requeues the job and
    # removes the upload; the job's input stays for the next attempt.
    first = store.claim("w1")
    assert first is not None and first.attempt == 1
    assert upload_attempt(storage, first) == {"video": "outputs/job-1/1/video.mp4",
                                              "thumbnail": "outputs/job-1/1/thumbnail.jpg"}
    assert s3.keys(bucket, outputs) == ["fp/outputs/job-1/1/thumbnail.jpg", "fp/outputs/job-1/1/video.mp4"]
    assert an_hour_later.reap() == ["job-1"]
    assert discard_dead_attempts(engine, storage, ["job-1"]) == ["job-1/1"]
    assert s3.keys(bucket, outputs) == []
    assert s3.keys(bucket, "fp/inputs/") == ["fp/inputs/job-1/image.png"]

    # Attempt 2 dies the same way and nothing reaps its upload before attempt 3 runs.
    second = store.claim("w2")
    assert second is not None and second.attempt == 2
    upload_attempt(storage, second)
    assert an_hour_later.reap() == ["job-1"]
    third = store.claim("w3")
    assert third is not None and third.attempt == 3
    storage.fetch_inputs(third.inputs, storage.work_dir("job-1", 3) / "inputs")
    assert (storage.root / "work" / "job-1-3" / "inputs" / "image.png").read_bytes() == b"png"
    work = storage.root / "work" / "job-1-3"
    (work / "preview.jpg").write_bytes(b"preview")
    store.set_preview(third, storage.save_preview("job-1", work / "preview.jpg", "preview.jpg"))
    staged = upload_attempt(storage, third)
    # A reaper pass while attempt 3 is live takes attempt 2's upload, never the live attempt's.
    assert discard_dead_attempts(engine, storage, ["job-1"]) == ["job-1/2"]
    assert [k.split("/")[3] for k in s3.keys(bucket, outputs)] == ["3", "3"]
    upload_attempt(storage, second)  # and had it not run, the completion's keep_only_attempt would
    assert store.complete(third, {**staged, "info": {}}, 7)
    storage.keep_only_attempt("job-1", 3)
    assert s3.keys(bucket, outputs) == ["fp/outputs/job-1/3/thumbnail.jpg", "fp/outputs/job-1/3/video.mp4"]
    assert storage.read_bytes(store.get("job-1").result["video"]) == b"mp4 of attempt 3"
    # The published attempt is never a dead one.
    assert discard_dead_attempts(engine, storage, ["job-1"]) == []

    # Retention removes every object of the finished job: inputs, outputs, previews.
    retention = Retention(engine, storage, Policy(files_seconds=60), holder="test",
                          clock=lambda: time.time() + 3600)
    storage.batch_delete = False  # one DELETE per object, as with GCS, which has no DeleteObjects
    assert retention.run_round().files_removed == ["job-1"]
    assert s3.keys(bucket) == []
    engine.dispose()


def test_storage_url_chooses_the_store_and_bad_ones_name_the_setting(s3: S3Server, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, storage_url="s3://bucket-a/some/prefix/", s3_endpoint_url=s3.url,
                        _env_file=None)  # type: ignore[call-arg]
    from framepack_api.storage.s3 import S3Storage

    storage = create_storage(settings)
    assert isinstance(storage, S3Storage) and (storage.bucket, storage.prefix) == ("bucket-a", "some/prefix")
    assert storage.root == (tmp_path / "files").resolve()  # work directories stay local
    local = Settings(data_dir=tmp_path, storage_url=f"file://{tmp_path}/elsewhere",
                     _env_file=None)  # type: ignore[call-arg]
    assert create_storage(local).root == (tmp_path / "elsewhere").resolve()
    for bad in ("s3://", "ftp://host/x", "/just/a/path", "file://"):
        with pytest.raises(ValidationError, match="storage_url"):
            Settings(storage_url=bad, _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="outside storage"):
        storage.object_key("inputs/../../other-bucket")


@pytest.mark.parametrize(("header", "expected"), [
    (None, None), ("bytes=10-19", (10, 19)), ("bytes=10-", (10, 99)), ("bytes=-5", (95, 99)),
    ("bytes=90-500", (90, 99)), ("bytes=100-", "unsatisfiable"), ("bytes=-0", "unsatisfiable"),
    ("bytes=0-1,5-6", None), ("items=0-1", None), ("bytes=9-3", None),
])
def test_byte_ranges_of_streamed_objects(header: str | None, expected: object) -> None:
    assert byte_range(header, 100) == expected


class RemoteLikeBackend:
    """Stands in for a remote server's client: like backends/remote.py it records the remote video's
    id in its 'remote' input while it runs, so that a later attempt resumes instead of resubmitting."""

    preset = "remote"
    is_tiny = False

    def run(self, job_type: JobType, params: dict[str, object], inputs: dict[str, Path],
            ctx: RunContext) -> JobOutput:
        state = json.loads(inputs["remote"].read_text())
        inputs["remote"].write_text(json.dumps({**state, "remote_id": "video_123"}))
        (ctx.workdir / "video.mp4").write_bytes(b"the remote's mp4")
        return JobOutput(files={"video": ctx.workdir / "video.mp4"}, seed=3)


def test_a_worker_on_s3_fetches_inputs_publishes_and_stores_back_the_remote_state(
        s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = s3.new_bucket()
    for name, value in s3.env(bucket).items():
        monkeypatch.setenv(name, value)
    settings = Settings(data_dir=tmp_path / "worker", _env_file=None)  # type: ignore[call-arg]
    worker = Worker(settings, lambda _: RemoteLikeBackend())
    upgrade(worker.engine)
    key = worker.storage.write_input("job-r", "remote.json", json.dumps({"job_id": "job-r"}).encode())
    worker.store.submit(NewJob(type=JobType.remote_video, params={"prompt": "p"}, inputs={"remote": key},
                               id="job-r"))
    job = worker.store.claim(worker.id)
    assert job is not None
    worker.run_one(RemoteLikeBackend(), job)

    done = worker.store.get("job-r")
    assert done.status.value == "completed" and done.result is not None
    assert s3.read(bucket, "fp/" + done.result["video"]) == b"the remote's mp4"
    assert json.loads(s3.read(bucket, "fp/inputs/job-r/remote.json")) == {"job_id": "job-r", "remote_id": "video_123"}
    assert not (worker.storage.root / "work" / "job-r-1").exists()
    assert not (tmp_path / "worker" / "files" / "inputs").exists()  # nothing of the job on the worker's disk
    worker.engine.dispose()
