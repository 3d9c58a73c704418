"""Helpers of the hostile-input suite (tests/api/hostile): the counters that prove a refused request
wrote nothing (rows in every table, files under storage) and the field a refusal names."""

from __future__ import annotations

import base64
import io
from typing import Any

import sqlalchemy as sa
from PIL import Image

from framepack_api.settings import Settings

TABLES = ("jobs", "job_events", "webhook_deliveries", "openai_videos", "training_videos")


def png_b64(size: tuple[int, int] = (48, 32)) -> str:
    out = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


class Target:
    """A running app and what it has stored."""

    def __init__(self, client: Any, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.engine = sa.create_engine(settings.resolved_database_url)

    def written(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self.engine.connect() as conn:
            for table in TABLES:
                counts[table] = int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())
        root = self.settings.storage_dir
        counts["files"] = sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0
        return counts


def refused_field(response: Any) -> str | None:
    """The field a refusal names: native ``detail[].loc`` or OpenAI's ``error.param``."""
    body = response.json()
    if isinstance(body.get("error"), dict):
        param = body["error"].get("param")
        return str(param) if param else None
    detail = body.get("detail")
    if isinstance(detail, list) and detail:
        return ".".join(str(part) for part in detail[0]["loc"])
    return None


def names(response: Any, field: str) -> bool:
    named = refused_field(response)
    return named is not None and field in named.split(".")
