"""The Images tab (seed 002): one image, a batch, and transfer (kisekaeichi)."""

from __future__ import annotations

from typing import Any

import gradio as gr

from framepack_api.params import ImageBatchParams, ImageParams, ImageTransferParams
from framepack_api.ui.context import UIContext
from framepack_api.ui.forms import Form
from framepack_api.ui.params import parse_lora_scales, parse_seeds, prompt_lines
from framepack_api.ui.rope_inputs import build_rope_inputs, take_rope_batch
from framepack_api.ui.submit import lora_picker, refused, submit


def _sampling(form: Form) -> None:
    form.slider("steps", "Steps", 1)
    with gr.Row():
        # A column per field inside a row: the field's error slot then sits under it, not beside it.
        with gr.Column(min_width=160):
            form.slider("cfg", "CFG scale (real guidance)", 0.01)
        with gr.Column(min_width=160):
            form.slider("gs", "Distilled CFG scale (gs)", 0.01)


def _size(form: Form, optional: bool = False) -> None:
    with gr.Row():
        for side in ("width", "height"):
            with gr.Column(min_width=160):
                if optional:
                    form.number(side, side.capitalize(), value=None, info="Empty: the target image's bucket.")
                else:
                    form.slider(side, side.capitalize(), 16, minimum=64)


def _clean(values: dict[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    """Drop empty optional fields; parse the LoRA scales."""
    if "lora_paths" in values:
        try:
            values["lora_paths"], values["lora_scales"] = parse_lora_scales(values["lora_paths"],
                                                                            values["lora_scales"])
        except ValueError as exc:
            errors["lora_scales"] = str(exc)
    return {k: v for k, v in values.items() if v is not None and v != "" and v != []}


def build_images_tab(ctx: UIContext, selected: gr.State) -> tuple[list[Form], list[tuple[gr.Dropdown, gr.Button]],
                                                                 gr.Tabs]:
    pickers = []
    with gr.Tabs(elem_id="img-tabs") as subtabs:
        with gr.Tab("One image", id="img-one"):
            one = Form("img", ImageParams)
            with gr.Row():
                with gr.Column():
                    one.add("input_image", gr.Image(type="filepath", label="Input image (optional: empty = text "
                                                    "to image)", height=300, elem_id="img-input_image"))
                    one.textbox("prompt", "Prompt", lines=3)
                    one_button = gr.Button("Add to queue", variant="primary", elem_id="img-submit")
                    one.footer()
                with gr.Column():
                    one.number("seed", "Seed")
                    _sampling(one)
                    _size(one)
                    pickers.append(lora_picker(one, "img"))
                    with gr.Accordion("Advanced (one-frame index layout)", open=False):
                        one.textbox("negative_prompt", "Negative prompt")
                        one.slider("latent_window_size", "Latent window size", 1)
                        one.number("target_index", "Target index", value=None, info="Empty: the window size.")
                        one.checkbox("no_2x", "No 2x history latents")
                        one.checkbox("no_4x", "No 4x history latents")
                        one.checkbox("no_post", "No post latent")
                    build_rope_inputs(one)
        with gr.Tab("Batch", id="img-batch"):
            batch = Form("batch", ImageBatchParams)
            with gr.Row():
                with gr.Column():
                    batch.textbox("prompts", "Prompts (one image per line)", lines=6)
                    batch.textbox("seeds", "Seeds", placeholder="e.g. 1, 2, 3 (empty or -1: random)")
                    batch_button = gr.Button("Add to queue", variant="primary", elem_id="batch-submit")
                    batch.footer()
                with gr.Column():
                    batch.slider("batch_size", "Images per pass (batch size)", 1)
                    _sampling(batch)
                    _size(batch)
                    pickers.append(lora_picker(batch, "batch"))
                    with gr.Accordion("Advanced", open=False):
                        batch.textbox("negative_prompt", "Negative prompt")
        with gr.Tab("Transfer (kisekaeichi)", id="img-transfer"):
            transfer = Form("xfer", ImageTransferParams)
            with gr.Row():
                with gr.Column():
                    with gr.Row():
                        with gr.Column(min_width=200):
                            transfer.add("target_image", gr.Image(type="filepath", label="Subject (target image)",
                                                                  height=260, elem_id="xfer-target_image"))
                        with gr.Column(min_width=200):
                            transfer.add("source_image", gr.Image(type="filepath", label="Reference (source image)",
                                                                  height=260, elem_id="xfer-source_image"))
                    transfer.textbox("prompt", "Prompt", lines=3)
                    transfer_button = gr.Button("Add to queue", variant="primary", elem_id="xfer-submit")
                    transfer.footer()
                with gr.Column():
                    transfer.slider("transfer_strength", "Transfer strength", 0.01)
                    transfer.number("seed", "Seed")
                    _sampling(transfer)
                    _size(transfer, optional=True)
                    pickers.append(lora_picker(transfer, "xfer"))
                    with gr.Accordion("Advanced", open=False):
                        transfer.textbox("negative_prompt", "Negative prompt")
                        transfer.number("history_index", "Reference index (history_index)")
                        transfer.number("target_index", "Target index")
                        with gr.Row():
                            with gr.Column(min_width=160):
                                transfer.add("target_mask", gr.Image(type="filepath", label="Subject mask (optional)",
                                                                     image_mode="L", height=200,
                                                                     elem_id="xfer-target_mask"))
                            with gr.Column(min_width=160):
                                transfer.add("source_mask", gr.Image(type="filepath",
                                                                     label="Reference mask (optional)",
                                                                     image_mode="L", height=200,
                                                                     elem_id="xfer-source_mask"))

    def on_one(*args: Any) -> list[Any]:
        errors: dict[str, str] = {}
        values = one.values(args)
        take_rope_batch(values, errors)
        values = _clean(values, errors)
        if errors:
            return refused(one, errors)
        return submit(ctx, one, "POST /api/generate-image", lambda: ctx.api.submit_image(**values))

    def on_batch(*args: Any) -> list[Any]:
        values = batch.values(args)
        errors: dict[str, str] = {}
        prompts = prompt_lines(values.pop("prompts"))
        if not prompts:
            errors["prompts"] = "Write at least one prompt (one per line)."
        try:
            values["seeds"] = parse_seeds(values["seeds"])
        except ValueError as exc:
            errors["seeds"] = str(exc)
        values = _clean(values, errors)
        if errors:
            return refused(batch, errors)
        return submit(ctx, batch, "POST /api/batch-images", lambda: ctx.api.submit_image_batch(prompts, **values))

    def on_transfer(*args: Any) -> list[Any]:
        errors: dict[str, str] = {}
        values = _clean(transfer.values(args), errors)
        for name, what in (("target_image", "the subject"), ("source_image", "the reference")):
            if name not in values:
                errors[name] = f"Upload {what} image."
        if errors:
            return refused(transfer, errors)
        target, source = values.pop("target_image"), values.pop("source_image")
        return submit(ctx, transfer, "POST /api/transfer-image",
                      lambda: ctx.api.submit_image_transfer(target, source, **values))

    for form, button, handler in ((one, one_button, on_one), (batch, batch_button, on_batch),
                                  (transfer, transfer_button, on_transfer)):
        button.click(handler, form.inputs, [*form.feedback_outputs, selected], concurrency_limit=None)
    return [one, batch, transfer], pickers, subtabs
