"""One Settings class, read from ``FRAMEPACK_API_*`` environment variables and ``.env``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ModelChoice = Literal["auto", "framepack", "framepack-f1", "tiny"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FRAMEPACK_API_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("./data"), description="Root of the database, inputs, outputs and models.")
    database_url: str = Field("", description="SQLAlchemy URL; empty means an SQLite file in data_dir.")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)

    model: ModelChoice = Field("auto", description="auto: the real model with CUDA, else the tiny one.")
    workers: int = Field(1, ge=0, le=64, description="Embedded worker processes started by `serve`.")
    lora_dir: Path | None = None

    # Where real weights come from; overridable for local mirrors.
    hunyuan_repo: str = "hunyuanvideo-community/HunyuanVideo"
    siglip_repo: str = "lllyasviel/flux_redux_bfl"
    transformer_repo: str = "lllyasviel/FramePackI2V_HY"
    transformer_f1_repo: str = "lllyasviel/FramePack_F1_I2V_HY_20250503"
    device: str = Field("auto", description="torch device for the model: auto, cuda, cuda:1, cpu.")
    memory_mode: Literal["auto", "gpu", "offload"] = "auto"

    default_resolution: int | None = Field(
        None, ge=64, le=1280, description="Bucket size when a job gives none: 640 real, 128 tiny."
    )
    max_resolution: int = Field(1280, ge=64, le=1280)
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(4096 * 4096, ge=64 * 64)
    max_video_seconds: float = Field(120.0, gt=0, le=120.0)

    lease_seconds: float = Field(60.0, gt=0, description="A claimed job is reclaimed after this silence.")
    heartbeat_seconds: float = Field(10.0, gt=0)
    max_attempts: int = Field(3, ge=1, le=20)
    reap_interval_seconds: float = Field(5.0, gt=0)
    poll_interval_seconds: float = Field(0.5, gt=0)
    recent_finished_limit: int = Field(20, ge=0, le=1000)

    # -- live progress (events, previews, webhooks) --
    preview_every_steps: int = Field(1, ge=1, description="Store a latent preview every N steps.")
    sse_keepalive_seconds: float = Field(15.0, gt=0)
    webhook_secret: str = Field("", description="HMAC-SHA256 key for webhook signatures.")
    webhook_allowed_hosts: list[str] = Field(default_factory=list,
                                             description="Empty: any host. Else only these hosts.")
    webhook_timeout_seconds: float = Field(10.0, gt=0)
    webhook_max_attempts: int = Field(8, ge=1, le=50)

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
        return self.data_dir / "files"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"


@lru_cache
def get_settings() -> Settings:
    return Settings()
