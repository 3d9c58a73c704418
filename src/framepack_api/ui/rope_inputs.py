"""The One image form's RoPE batch inputs: one image per RoPE target index (docs/API.md#rope-batch).

The API takes ``rope_batch`` as ``{"indices": [...]}``, ``{"start", "end", "step"}`` or
``{"start", "count", "step"}``; the form offers the three as a choice plus a field each, and turns
them into that object. It is checked here with the server's own model, so that an error shows under
the field at fault (the server's answer for the nested object would only name ``rope_batch``).
"""

from __future__ import annotations

from typing import Any

import gradio as gr
from pydantic import ValidationError

from framepack_api.params.image import RopeBatch
from framepack_api.ui.forms import Form

OFF, INDICES, RANGE, COUNT = "off", "indices", "range", "count"
MODES = [("Off (one image at the target index)", OFF), ("A list of indices", INDICES),
         ("Start to end", RANGE), ("Start and count", COUNT)]
# Form fields by RopeBatch field; "rope_batch" (the mode) takes errors about the object as a whole.
FIELDS = {"indices": "rope_indices", "start": "rope_start", "end": "rope_end", "count": "rope_count",
          "step": "rope_step"}
ROPE_FIELDS = ("rope_batch", *FIELDS.values())  # rope_batch_size is the API's own field name


def build_rope_inputs(form: Form) -> None:
    with gr.Accordion("RoPE batch (one image per target index)", open=False, elem_id="img-rope"):
        gr.Markdown("Same input, prompt and seed; one image per RoPE target index (how far *later* the "
                    "sampled frame sits), made in ascending index order. Replaces *Target index*.")
        form.add("rope_batch", gr.Radio(MODES, value=OFF, label="Target indices", elem_id="img-rope_batch"))
        form.textbox("rope_indices", "Indices", placeholder="e.g. 1, 5, 12", info="For 'A list of indices'.")
        with gr.Row():
            for name, label in (("rope_start", "Start"), ("rope_end", "End (inclusive)"), ("rope_count", "Count"),
                                ("rope_step", "Step")):
                with gr.Column(min_width=110):
                    form.add(name, gr.Number(value=1 if name == "rope_step" else None, precision=0, label=label,
                                             elem_id=f"img-{name}"))
        form.slider("rope_batch_size", "Indices per batched pass", 1)


def _whole(value: Any) -> int | None:
    return None if value is None or value == "" else int(value)


def take_rope_batch(values: dict[str, Any], errors: dict[str, str]) -> None:
    """Replace the form's RoPE fields in ``values`` by the API's ``rope_batch`` (or nothing when off)."""
    mode = values.pop("rope_batch") or OFF
    raw = {name: values.pop(field) for name, field in FIELDS.items()}
    if mode == OFF:
        values.pop("rope_batch_size", None)  # meaningless without a RoPE batch
        return
    if values.get("target_index") is not None:
        errors["target_index"] = "A RoPE batch sets the target indices: leave Target index empty."
    step = _whole(raw["step"])
    body: dict[str, Any] = {"step": 1 if step is None else step}
    if mode == INDICES:
        parts = [p.strip() for p in (raw["indices"] or "").replace(";", ",").split(",") if p.strip()]
        try:
            body = {"indices": [int(p) for p in parts]}
        except ValueError:
            errors["rope_indices"] = "Indices must be whole numbers separated by commas, e.g. 1, 5, 12."
            return
    else:
        body["start"] = _whole(raw["start"])
        body["end" if mode == RANGE else "count"] = _whole(raw["end" if mode == RANGE else "count"])
    try:
        RopeBatch.model_validate(body)
    except ValidationError as exc:
        for error in exc.errors():
            loc = error["loc"]
            field = FIELDS.get(str(loc[0])) if loc else None
            errors.setdefault(field or "rope_batch", error["msg"])
        return
    values["rope_batch"] = body


def rope_form_values(params: dict[str, Any]) -> dict[str, Any]:
    """A recorded job's ``rope_batch`` in the form's fields ("Use these settings again")."""
    rope = params.get("rope_batch")
    if not isinstance(rope, dict):
        return {"rope_batch": OFF}
    if rope.get("indices"):
        return {"rope_batch": INDICES, "rope_indices": ", ".join(str(i) for i in rope["indices"])}
    out = {"rope_batch": RANGE if rope.get("end") is not None else COUNT, "rope_start": rope.get("start"),
           "rope_step": rope.get("step", 1)}
    out.update({"rope_end": rope["end"]} if rope.get("end") is not None else {"rope_count": rope.get("count")})
    return out
