"""Driving a Gradio form's submit handler as the page would, without a browser."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from framepack_api.ui.forms import Form


def press_submit(form: Form, handler: Callable[..., list[Any]], **values: Any) -> tuple[dict[str, Any], Any]:
    """Fill the form (defaults elsewhere), press the button; return the shown field errors and the job id."""
    filled = {name: component.value for name, component in form.fields.items()}
    filled.update(values)
    out = handler(*(filled[name] for name in form.names))
    errors = {name: update["value"] for name, update in zip(form.names, out, strict=False) if update["visible"]}
    return errors, out[-1]
