"""Log set-up for every process: text lines, or one JSON object per line (LOG_FORMAT=json) with the job
and worker a line is about whenever they are known.

The ids travel in context variables, so any module's `log.info(...)` inside a job carries them without
passing them around. A thread started inside a job must copy the context (`contextvars.copy_context`)."""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

job_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("framepack_job_id", default=None)
worker_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("framepack_worker_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d]%(ids)s %(message)s"


@contextlib.contextmanager
def log_context(*, job_id: str | None = None, worker_id: str | None = None) -> Iterator[None]:
    """Lines logged inside carry these ids (None leaves the outer value)."""
    tokens = []
    if job_id is not None:
        tokens.append((job_id_var, job_id_var.set(job_id)))
    if worker_id is not None:
        tokens.append((worker_id_var, worker_id_var.set(worker_id)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class ContextIds(logging.Filter):
    """Puts the current job and worker ids on each record (as attributes, for both formats)."""

    def filter(self, record: logging.LogRecord) -> bool:
        # An id given explicitly (`extra={"job_id": ...}`) wins over the context's.
        job_id = getattr(record, "job_id", None) or job_id_var.get()
        worker_id = getattr(record, "worker_id", None) or worker_id_var.get()
        record.__dict__.update(job_id=job_id, worker_id=worker_id,
                               ids="".join(f" {k}={v}" for k, v in (("worker", worker_id), ("job", job_id)) if v))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, and job_id, worker_id,
    pid, exception when present."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for key in ("job_id", "worker_id"):
            value = getattr(record, key, None)
            if value:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(log_format: str = "text", level: str = "INFO") -> None:
    """Replace the root handlers with one stderr handler in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextIds())
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # a library's warnings.warn becomes a log line in the same format
