"""A submit form: its components by API field name, each with an error slot right below it."""

from __future__ import annotations

from typing import Any

import gradio as gr
from pydantic import BaseModel

from framepack_api.ui.params import error_html, spec


class Form:
    def __init__(self, prefix: str, model: type[BaseModel] | None = None) -> None:
        self.prefix = prefix
        self.model = model
        self.fields: dict[str, Any] = {}
        self.errors: dict[str, gr.HTML] = {}
        self.general: gr.HTML | None = None
        self.notice: gr.HTML | None = None

    def add(self, name: str, component: Any) -> Any:
        """Register a component created just before; its error slot is placed right after it."""
        self.fields[name] = component
        self.errors[name] = gr.HTML("", visible=False, elem_id=f"{self.prefix}-err-{name}",
                                    elem_classes=["fp-field-error"])
        return component

    def slider(self, name: str, label: str, step: float, *, minimum: float | None = None,
               value: Any = None, info: str | None = None) -> gr.Slider:
        s = spec(self.model, name) if self.model else None
        low = minimum if minimum is not None else (s.minimum if s and s.minimum is not None else 0)
        high = s.maximum if s and s.maximum is not None else 100
        default = value if value is not None else (s.default if s else low)
        return self.add(name, gr.Slider(low, high, value=default, step=step, label=label,
                                        info=info or (s.description if s else None),
                                        elem_id=f"{self.prefix}-{name}"))

    def number(self, name: str, label: str, *, value: Any = None, info: str | None = None,
               precision: int | None = 0) -> gr.Number:
        s = spec(self.model, name) if self.model else None
        default = value if value is not None else (s.default if s else None)
        return self.add(name, gr.Number(value=default, label=label, precision=precision,
                                        info=info or (s.description if s else None),
                                        elem_id=f"{self.prefix}-{name}"))

    def textbox(self, name: str, label: str, *, lines: int = 1, placeholder: str | None = None,
                info: str | None = None) -> gr.Textbox:
        return self.add(name, gr.Textbox(label=label, lines=lines, placeholder=placeholder, info=info,
                                         elem_id=f"{self.prefix}-{name}"))

    def checkbox(self, name: str, label: str) -> gr.Checkbox:
        s = spec(self.model, name) if self.model else None
        return self.add(name, gr.Checkbox(value=bool(s.default) if s else False, label=label,
                                          info=s.description if s else None, elem_id=f"{self.prefix}-{name}"))

    def footer(self) -> None:
        """The general error slot and the 'queued' notice, placed under the submit button."""
        self.general = gr.HTML("", visible=False, elem_id=f"{self.prefix}-error", elem_classes=["fp-form-error"])
        self.notice = gr.HTML("", elem_id=f"{self.prefix}-notice")

    @property
    def names(self) -> list[str]:
        return list(self.fields)

    @property
    def inputs(self) -> list[Any]:
        return list(self.fields.values())

    @property
    def feedback_outputs(self) -> list[Any]:
        assert self.general is not None and self.notice is not None, "call footer() first"
        return [*self.errors.values(), self.general, self.notice]

    def values(self, args: tuple[Any, ...]) -> dict[str, Any]:
        return dict(zip(self.names, args, strict=True))

    def feedback(self, errors: dict[str, str] | None = None, general: str | None = None,
                 notice: str = "") -> list[Any]:
        """Updates for every error slot (shown or hidden), the general error and the notice."""
        errors = errors or {}
        updates: list[Any] = [gr.update(value=error_html(errors.get(name)), visible=name in errors)
                              for name in self.errors]
        updates.append(gr.update(value=error_html(general), visible=general is not None))
        updates.append(notice)
        return updates

    def fill(self, params: dict[str, Any], skip: set[str] | frozenset[str] = frozenset()) -> list[Any]:
        """Updates that put a job's parameters back into this form (images are not re-uploaded)."""
        out: list[Any] = []
        for name, component in self.fields.items():
            if name in skip or name not in params or isinstance(component, (gr.Image, gr.File)):
                out.append(gr.skip())
            else:
                out.append(gr.update(value=params[name]))
        return out
