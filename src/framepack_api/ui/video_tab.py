"""The Video tab: FramePack's image-to-video form, with its defaults and ranges."""

from __future__ import annotations

from typing import Any

import gradio as gr

from framepack_api.client_common import ImageSource
from framepack_api.params import VideoParams
from framepack_api.ui.context import UIContext
from framepack_api.ui.extend import EXTENSION_FIELDS, build_extension_inputs, is_extension, submit_extension
from framepack_api.ui.forms import Form
from framepack_api.ui.params import parse_lora_scales
from framepack_api.ui.schedule import PROMPT_HELP, parse_times, schedule_preview
from framepack_api.ui.submit import lora_picker, refused, submit


def build_video_tab(ctx: UIContext, selected: gr.State) -> tuple[Form, gr.Dropdown, gr.Button, gr.Accordion]:
    """The form, its LoRA picker and refresh button, and the extension section (the job view opens it)."""
    form = Form("vid", VideoParams)
    with gr.Row():
        with gr.Column():
            with gr.Row():
                with gr.Column(min_width=200):  # a column each, so that the error slot sits under its image
                    form.add("image", gr.Image(type="filepath", label="Start image", sources=["upload", "clipboard"],
                                               height=320, elem_id="vid-image"))
                with gr.Column(min_width=200):
                    form.add("end_image", gr.Image(type="filepath", label="End image (optional; reverse only)",
                                                   sources=["upload", "clipboard"], height=320,
                                                   elem_id="vid-end_image"))
            prompt = form.textbox("prompt", "Prompt", lines=3, info=PROMPT_HELP,
                                  placeholder="The girl dances gracefully, with clear movements.")
            # The server's own parse of the schedule and keyframes, updated as they are typed.
            preview = gr.HTML(schedule_preview("", 5.0, 9), elem_id="vid-schedule")
            with gr.Accordion("Keyframes (optional; reverse only)", open=False, elem_id="vid-keyframes"):
                form.add("keyframe_images", gr.File(
                    file_count="multiple", file_types=["image"], type="filepath", label="Keyframe images",
                    elem_id="vid-keyframe_images"))
                keyframe_times = form.textbox(
                    "keyframe_times", "Keyframe times (seconds)", placeholder="e.g. 1.5, 3",
                    info="One time per image, in the order uploaded. Each pins its image at the end of the "
                         "section nearest that time, as the end image pins the last one.")
            extension = build_extension_inputs(form)
            button = gr.Button("Add to queue", variant="primary", elem_id="vid-submit")
            form.footer()
        with gr.Column():
            form.number("seed", "Seed", info="-1 draws a random seed; the job records the one used.")
            form.slider("video_length", "Total video length (seconds)", 0.1, minimum=0.1)
            form.slider("steps", "Steps", 1, info="Sampling steps per section. Changing this is not recommended.")
            form.slider("gs", "Distilled CFG scale (gs)", 0.01)
            form.checkbox("use_teacache", "Use TeaCache (faster, hands and fingers may get slightly worse)")
            names, refresh = lora_picker(form, "vid")
            with gr.Accordion("Advanced", open=False, elem_id="vid-advanced"):
                form.textbox("negative_prompt", "Negative prompt", info="Used only when CFG scale > 1.")
                form.slider("latent_window_size", "Latent window size", 1)
                form.slider("cfg", "CFG scale (real guidance)", 0.01)
                form.slider("rs", "CFG re-scale (rs)", 0.01)
                form.slider("gpu_memory_preservation", "GPU inference preserved memory (GB)", 0.1)
                form.slider("mp4_crf", "MP4 compression (CRF)", 1, info="0 lossless; lower is better quality.")
                form.add("sampling_mode", gr.Radio(["reverse", "forward"], value="reverse", label="Sampling",
                                                   info="reverse = FramePack (anti-drifting), forward = FramePack-F1.",
                                                   elem_id="vid-sampling_mode"))
                form.number("resolution", "Resolution (bucket)", value=None,
                            info="Empty = the server's default (640 with the real model, 128 with the tiny one).")
                form.add("priority", gr.Number(value=0, precision=0, label="Priority",
                                               info="-100 … 100; higher runs first.", elem_id="vid-priority"))

    def on_submit(*args: Any) -> list[Any]:
        values = form.values(args)
        image, end_image = values.pop("image"), values.pop("end_image")
        extending = is_extension(values)
        keyframes: list[ImageSource] = [str(k) for k in values.pop("keyframe_images") or []]
        errors: dict[str, str] = {}
        if extending and (image or end_image):
            errors["image" if image else "end_image"] = "Extending a video starts from its frames: remove the image."
        if not image and not extending:
            errors["image"] = "Upload a start image."
        try:
            values["keyframe_times"] = parse_times(values["keyframe_times"])
        except ValueError as exc:
            errors["keyframe_times"] = str(exc)
        if keyframes and len(keyframes) != len(values.get("keyframe_times") or []):
            errors["keyframe_images"] = (f"{len(keyframes)} image(s) for {len(values['keyframe_times'])} "
                                         "time(s): give one time per image.")
        try:
            values["lora_paths"], values["lora_scales"] = parse_lora_scales(values["lora_paths"],
                                                                            values["lora_scales"])
        except ValueError as exc:
            errors["lora_scales"] = str(exc)
        if errors:
            return refused(form, errors)
        if not values["lora_paths"]:
            del values["lora_paths"], values["lora_scales"]
        if extending:
            return submit_extension(ctx, form, values)
        for name in EXTENSION_FIELDS:
            values.pop(name)
        params = {k: v for k, v in values.items() if v is not None and v != "" and v != []}
        return submit(ctx, form, "POST /generate",
                      lambda: ctx.api.submit_video(image, end_image=end_image or None, keyframes=keyframes,
                                                   **params))

    watched = [prompt, form.fields["video_length"], form.fields["latent_window_size"], keyframe_times,
               form.fields["sampling_mode"], form.fields["end_image"]]

    def on_change(text: str, seconds: float, window: float, times: str, mode: str, end: str | None) -> str:
        return schedule_preview(text, seconds, window, times, mode, has_end_image=bool(end))

    for component in watched:
        component.change(on_change, watched, preview, show_progress="hidden")
    button.click(on_submit, form.inputs, [*form.feedback_outputs, selected], concurrency_limit=None)
    return form, names, refresh, extension
