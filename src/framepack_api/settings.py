"""One Settings class, read from ``FRAMEPACK_API_*`` environment variables and ``.env``."""

from __future__ import annotations

import base64
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from framepack_api.gpus import parse_visible_devices

ModelChoice = Literal["auto", "framepack", "framepack-f1", "tiny"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FRAMEPACK_API_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("./data"), description="Root of the database, inputs, outputs and models.")
    database_url: str = Field("", description="SQLAlchemy URL; empty means an SQLite file in data_dir.")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)

    model: ModelChoice = Field("auto", description="auto: the real model with CUDA, else the tiny one.")
    workers: Annotated[int, Field(ge=0, le=64)] | Literal["auto"] = Field(
        1, description="Embedded worker processes started by `serve`; auto: one per visible GPU (one on the CPU "
                       "without a GPU).")
    gpus: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="GPUs the workers are pinned to, one worker each: nvidia-smi indices or "
                                          "GPU-/MIG- UUIDs (0,1,3), or all. Empty: with workers=auto, every "
                                          "visible GPU; else workers are not pinned.")
    lora_dir: Path | None = None

    # Where real weights come from; overridable for local mirrors.
    hunyuan_repo: str = "hunyuanvideo-community/HunyuanVideo"
    siglip_repo: str = "lllyasviel/flux_redux_bfl"
    transformer_repo: str = "lllyasviel/FramePackI2V_HY"
    transformer_f1_repo: str = "lllyasviel/FramePack_F1_I2V_HY_20250503"
    device: str = Field("auto", description="torch device for the model: auto, cuda, cuda:1, cpu.")
    memory_mode: Literal["auto", "gpu", "offload", "group", "leaf"] = Field(
        "auto", description="Where the weights live: gpu, offload (model-level), group (block-level group "
                            "offloading, resident blocks per job), leaf (layer by layer); auto picks from free VRAM.")

    default_resolution: int | None = Field(
        None, ge=64, le=1280, description="Bucket size when a job gives none: 640 real, 128 tiny."
    )
    max_resolution: int = Field(1280, ge=64, le=1280)
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(4096 * 4096, ge=64 * 64)
    max_video_seconds: float = Field(120.0, gt=0, le=120.0)
    job_memory_budget_gb: float = Field(
        0.0, ge=0, description="Refuse at submit (422) a job whose estimated memory (frames × size, see "
                               "docs/RELIABILITY.md) is above this many GB; 0 = no limit.")

    lease_seconds: float = Field(60.0, gt=0, description="A claimed job is reclaimed after this silence.")
    heartbeat_seconds: float = Field(10.0, gt=0)
    max_attempts: int = Field(3, ge=1, le=20)
    reap_interval_seconds: float = Field(5.0, gt=0)
    poll_interval_seconds: float = Field(0.5, gt=0, description="Longest wait between claims when idle.")
    push: bool = Field(True, description="Wake idle workers, event streams and webhooks by notification "
                                         "(LISTEN/NOTIFY on PostgreSQL, local sockets on SQLite); off: poll only.")
    push_fallback_poll_seconds: float = Field(
        5.0, gt=0, description="While push is live, the longest wait between polls (a lost notification "
                               "costs at most this); workers wait at least poll_interval_seconds.")
    access_log: bool = Field(True, description="uvicorn's line per request.")
    log_format: Literal["text", "json"] = Field(
        "text", description="json: one JSON object per line (time, level, logger, message, job_id, worker_id).")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Lowest level logged.")
    ui_enabled: bool = Field(True, description="Mount the web page at /ui when the `ui` extra is installed.")
    recent_finished_limit: int = Field(20, ge=0, le=1000)

    # -- live progress (events, previews, webhooks) --
    preview_every_steps: int = Field(1, ge=1, description="Store a latent preview every N steps.")
    partial_videos: bool = Field(True, description="Write the video so far after each section. Each one "
                                                   "re-encodes everything so far: turn off for very long videos.")
    sse_keepalive_seconds: float = Field(15.0, gt=0)
    webhook_secret: str = Field("", description="Webhook signing secret: `whsec_<base64>` as Standard Webhooks "
                                                "libraries expect (docs/API.md#webhooks shows how to make one); any "
                                                "other string is used as its UTF-8 bytes.")
    webhook_signature: Literal["standard", "legacy", "both"] = Field(
        "standard", description="Signature headers: `standard` (Standard Webhooks: webhook-id, webhook-timestamp, "
                                "webhook-signature), `legacy` (X-FramePack-Signature), or `both` while receivers "
                                "migrate (docs/API.md#webhooks).")
    webhook_allowed_hosts: list[str] = Field(default_factory=list,
                                             description="Empty: any host. Else only these hosts.")
    webhook_timeout_seconds: float = Field(10.0, gt=0)
    webhook_max_attempts: int = Field(8, ge=1, le=50)
    webhook_concurrency: int = Field(32, ge=1, le=1000, description="Deliveries in flight at once, in all.")
    webhook_per_host_concurrency: int = Field(2, ge=1, le=100, description="Deliveries in flight to one host.")
    outbound_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Hosts or networks (CIDR) that webhooks and output_url may reach "
                                          "although private, loopback or link-local. Empty: public only.")

    # -- OpenAI dialect, training service, auth (issue 5) --
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Keys for `Authorization: Bearer` / `X-API-Key`; any turns auth on.")
    basic_auth_users: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description='HTTP Basic "user:password" pairs; any turns auth on.')
    admin_api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Keys that see and manage every credential's jobs; any turns auth on.")
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list,
                                                         description="Allowed CORS origins; none by default.")
    backend: Literal["framepack", "remote"] = Field("framepack", description="What runs /v1/videos jobs.")
    training_backend: Literal["framepack", "remote"] = Field(
        "framepack", description="What runs /api/video-generation/ jobs.")
    remote_base_url: str = Field("", description="An OpenAI-compatible server, e.g. http://host:8000/v1.")
    remote_api_key: str = ""
    remote_model: str = Field("framepack", description="The model asked of the remote server.")
    remote_timeout_seconds: float = Field(60.0, gt=0, description="Per HTTP request to the remote.")
    remote_max_wait_seconds: float = Field(6 * 3600.0, gt=0, description="Give up on a remote video after.")
    training_cache_ttl_seconds: float = Field(30 * 86400.0, ge=0, description="0 keeps runs' videos forever.")
    training_video_seconds: float = Field(4.0, gt=0, le=120.0, description="Length of training videos.")
    training_params: Annotated[dict[str, Any], NoDecode] = Field(
        default_factory=dict, description="Extra FramePack knobs (steps, seed, ...) for training videos.")
    video_expiry_seconds: float = Field(0.0, ge=0, description="/v1 downloads expire after; 0 = never.")
    openai_poll_after_ms: int = Field(1000, ge=50, le=60000, description="openai-poll-after-ms header.")

    @field_validator("webhook_secret")
    @classmethod
    def _usable_webhook_secret(cls, value: str) -> str:
        if value.startswith("whsec_"):  # Standard Webhooks' form: the key is the base64 after the prefix
            encoded = value[len("whsec_"):]
            try:
                key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
            except ValueError:
                raise ValueError("a whsec_ secret must be followed by base64 (docs/API.md#webhooks)") from None
            if not key:
                raise ValueError("a whsec_ secret must not be empty")
        return value

    @field_validator("api_keys", "basic_auth_users", "admin_api_keys", "cors_origins", "outbound_allow",
                     "training_params", "gpus", mode="before")
    @classmethod
    def _collection_from_env(cls, value: Any, info: ValidationInfo) -> Any:
        # Environment values: JSON, a Python literal (how `serve` hands settings to its workers),
        # or for lists a comma-separated string.
        if not isinstance(value, str):
            return value
        import ast
        import json

        text = value.strip()
        if not text:
            return {} if info.field_name == "training_params" else []
        if text[0] in "[{":
            try:
                return json.loads(text)
            except ValueError:
                return ast.literal_eval(text)
        return [part.strip() for part in text.split(",") if part.strip()]

    @field_validator("gpus")
    @classmethod
    def _gpu_selectors(cls, value: list[str]) -> list[str]:
        if value == ["all"]:
            return value
        for entry in value:
            if entry == "all" or parse_visible_devices(entry) != [entry]:
                raise ValueError(f"{entry!r} is not a GPU index, a GPU-/MIG- UUID, or all (alone)")
        return value

    @model_validator(mode="after")
    def _remote_needs_a_url(self) -> Settings:
        if "remote" in (self.backend, self.training_backend) and not self.remote_base_url:
            raise ValueError("the remote backend needs remote_base_url (FRAMEPACK_API_REMOTE_BASE_URL)")
        return self

    # -- image jobs and scheduling (issue 4) --
    image_max_side: int = Field(2048, ge=64, le=4096, description="Largest width or height of an image job.")
    image_priority_boost: int = Field(
        10, ge=0, le=1000, description="Priority points image jobs get over video jobs; 0 = same queue order.")
    aging_seconds_per_priority: float = Field(
        30.0, ge=0, description="A waiting job gains one priority point per this many seconds; 0 = no aging.")

    # -- retention, disk guard (issue 11, items 7 and 12; docs/RELIABILITY.md) --
    retention_files_seconds: float = Field(
        30 * 86400.0, ge=0, description="Remove finished jobs' files (inputs, results, previews) this long "
                                        "after they finished; 0 keeps them. Downloads then answer 410.")
    retention_jobs_seconds: float = Field(
        90 * 86400.0, ge=0, description="Delete finished jobs' rows, events and webhook outbox this long "
                                        "after they finished; 0 keeps them.")
    retention_events_seconds: float = Field(
        86400.0, ge=0, description="Delete progress/preview events (of any job, running ones included) and "
                                   "delivered webhook rows older than this; 0 keeps them.")
    retention_interval_seconds: float = Field(
        600.0, gt=0, description="How often the retention round runs (in one API process at a time).")
    min_free_disk_mb: float = Field(
        1024.0, ge=0, description="Free-space floor of data_dir: below it submits get 507 and running "
                                  "jobs fail; 0 turns the guard off.")

    # -- object storage (issue 12 point 1; docs/SCALING.md#object-storage) --
    storage_url: str = Field(
        "", description="Where inputs and results live: empty = data_dir/files, file:///dir = that directory, "
                        "s3://bucket/prefix = an S3-compatible object store (credentials: the usual AWS variables).")
    s3_endpoint_url: str = Field("", description="The S3 API's URL for MinIO, R2, GCS and the like; empty = AWS.")
    storage_downloads: Literal["stream", "redirect"] = Field(
        "stream", description="With s3://: stream downloads through the API, or answer 307 to a presigned URL.")
    s3_presign_seconds: int = Field(3600, ge=1, le=7 * 86400, description="Lifetime of a presigned download URL.")

    @field_validator("storage_url")
    @classmethod
    def _storage_url_known(cls, value: str) -> str:
        from framepack_api.storage import parse_storage_url  # storage imports this module

        parse_storage_url(value)
        return value

    # -- hostile input and admission (issue 11) --
    max_body_bytes: int | None = Field(
        None, ge=1024, description="Largest request body; larger ones get 413 before they are read. "
                                   "Default: four base64 images of MAX_UPLOAD_BYTES plus 1 MiB of fields.")
    max_pending_jobs: int = Field(0, ge=0, description="Pending jobs the whole server accepts; 0 = no limit.")
    max_pending_jobs_per_credential: int = Field(
        0, ge=0, description="Pending jobs one API key or Basic user may have; 0 = no limit.")
    admission_retry_after_seconds: int = Field(
        30, ge=1, le=3600, description="Retry-After of a 429 answered when a pending-job limit is reached.")

    @property
    def body_limit(self) -> int:
        if self.max_body_bytes is not None:
            return self.max_body_bytes
        return 4 * (self.max_upload_bytes * 4 // 3 + 4) + 1024 * 1024

    @model_validator(mode="after")
    def _heartbeat_shorter_than_lease(self) -> Settings:
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ValueError("heartbeat_seconds must be shorter than lease_seconds")
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'framepack-api.db').resolve()}"

    @property
    def storage_dir(self) -> Path:
        """The local files: all of them by default, only the work directories with s3://."""
        if self.storage_url.startswith("file://"):
            return Path(self.storage_url[len("file://"):])
        return self.data_dir / "files"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"


@lru_cache
def get_settings() -> Settings:
    return Settings()
