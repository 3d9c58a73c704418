"""Gradio-free helpers of the page: field defaults and ranges, API errors mapped to fields, parsing.

Defaults and ranges are read from the same pydantic models the server validates with, so the form
offers exactly what the API accepts; the server still has the last word, and its 4xx answers are
shown next to the field they name.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import annotated_types
from pydantic import BaseModel


@dataclass(frozen=True)
class Spec:
    default: Any
    minimum: float | None
    maximum: float | None
    description: str


def spec(model: type[BaseModel], name: str) -> Spec:
    field = model.model_fields[name]
    low = high = None
    for rule in field.metadata:
        if isinstance(rule, annotated_types.Ge):
            low = float(rule.ge)  # type: ignore[arg-type]
        elif isinstance(rule, annotated_types.Gt):
            low = float(rule.gt)  # type: ignore[arg-type]
        elif isinstance(rule, annotated_types.Le):
            high = float(rule.le)  # type: ignore[arg-type]
    default = None if field.is_required() else field.get_default(call_default_factory=True)
    return Spec(default=default, minimum=low, maximum=high, description=field.description or "")


def field_errors(status_code: int, detail: Any, fields: set[str]) -> tuple[dict[str, str], str | None]:
    """Split an API error into messages per form field and one general message.

    FastAPI's 422 `detail` is a list of {loc: ["body", field, ...], msg}; the server's own errors use
    the same shape, and the rest (404, 409, 413 ...) carry a plain string.
    """
    by_field: dict[str, list[str]] = {}
    general: list[str] = []
    items = detail if isinstance(detail, list) else [detail]
    for item in items:
        if isinstance(item, dict):
            msg = str(item.get("msg", item))
            loc = [str(part) for part in item.get("loc", []) if part not in ("body", "header", "query")]
            name = next((part for part in loc if part in fields), None)
            if name is not None:
                by_field.setdefault(name, []).append(msg)
                continue
            general.append(f"{'.'.join(loc)}: {msg}" if loc else msg)
        else:
            general.append(str(item))
    if status_code == 413 and not by_field and not general:
        general.append("upload too large for this server")
    text = "; ".join(general) if general else None
    if text is not None:
        text = f"The server refused the request (HTTP {status_code}): {text}"
    return {name: "; ".join(msgs) for name, msgs in by_field.items()}, text


def parse_lora_scales(names: list[str] | None, scales_text: str | None) -> tuple[list[str], list[float]]:
    """The picker gives names; scales are typed as "1.0, 0.6" (empty: 1.0 each)."""
    names = list(names or [])
    text = (scales_text or "").strip()
    if not text:
        return names, []
    try:
        scales = [float(part) for part in text.replace(";", ",").split(",") if part.strip()]
    except ValueError:
        raise ValueError("scales must be numbers separated by commas, e.g. 1.0, 0.6") from None
    if len(scales) != len(names):
        raise ValueError(f"{len(scales)} scale(s) for {len(names)} selected LoRA(s)")
    return names, scales


def parse_seeds(text: str | None) -> list[int]:
    """Batch seeds typed as "1, 2, -1"; empty means random for every prompt."""
    parts = [p.strip() for p in (text or "").replace(";", ",").split(",") if p.strip()]
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise ValueError("seeds must be whole numbers separated by commas") from None


def prompt_lines(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def error_html(message: str | None) -> str:
    return f'<div class="fp-error" role="alert">{html.escape(message)}</div>' if message else ""
