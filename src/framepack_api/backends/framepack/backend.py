"""FramepackBackend: the Backend protocol over one loaded FramePack pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from framepack_api.backends.base import JobOutput, RunContext
from framepack_api.backends.framepack.image_jobs import run_image_job
from framepack_api.backends.framepack.loader import LoadedModel, load_model
from framepack_api.backends.framepack.lora import LoraManager
from framepack_api.backends.framepack.video import generate_video
from framepack_api.params import IMAGE_JOB_TYPES, JobType, VideoParams
from framepack_api.params.keyframes import keyframe_input
from framepack_api.settings import Settings


def open_image(path: Path) -> Image.Image:
    """Open and fully read an image file, so the file handle is closed before sampling starts."""
    with Image.open(path) as img:
        img.load()
        # copy() detaches from the file but keeps .info and EXIF (orientation is applied later).
        return img.copy()


class FramepackBackend:
    """Loads the model once (at construction) and runs video jobs on it, one at a time."""

    def __init__(self, settings: Settings, model: LoadedModel | None = None) -> None:
        self.settings = settings
        self.model = model if model is not None else load_model(settings)
        # Plain attributes (the Backend protocol's); preset follows transformer swaps after each run.
        self.preset: str = self.model.preset
        self.is_tiny: bool = self.model.is_tiny
        self.device: str = str(self.model.device)  # "cuda", "cuda:1", "cpu": what the worker records
        self.loras = LoraManager(settings.lora_dir)

    def run(self, job_type: JobType, params: dict[str, Any], inputs: dict[str, Path],
            ctx: RunContext) -> JobOutput:
        if job_type in IMAGE_JOB_TYPES:
            try:
                return run_image_job(self.model, self.loras, job_type, params, inputs, ctx)
            finally:  # an image job may have swapped the transformer back to FramePack's
                self.preset = self.model.preset
        if job_type != JobType.video:
            raise ValueError(f"FramepackBackend cannot run {job_type!r} jobs")
        video_params = VideoParams.model_validate(params)
        input_video = inputs.get("video")  # an extension job: its first frame is the start image
        if "image" not in inputs and input_video is None:
            raise ValueError("a video job needs an 'image' or a 'video' input")
        image = open_image(inputs["image"]) if "image" in inputs else None
        end_path = inputs.get("end_image")
        end_image = open_image(end_path) if end_path is not None else None
        # Stored as keyframe_0, keyframe_1, ... in the order of params.keyframe_times.
        missing = [keyframe_input(i) for i in range(len(video_params.keyframe_times))
                   if keyframe_input(i) not in inputs]
        if missing:
            raise ValueError(f"a video job with keyframe_times needs the inputs {missing}")
        keyframes = [open_image(inputs[keyframe_input(i)]) for i in range(len(video_params.keyframe_times))]
        try:
            # Swap the transformer first (a no-op for the tiny model): a swap would drop applied LoRAs.
            self.model.use_sampling_mode(video_params.sampling_mode)
            with self.loras.applied(self.model.pipe.transformer, video_params.lora_pairs()) as loras:
                output = generate_video(self.model, video_params, image, end_image, ctx.workdir, ctx,
                                        preview_every=self.settings.preview_every_steps,
                                        partial_videos=self.settings.partial_videos, keyframes=keyframes,
                                        input_video=input_video)
            if loras:
                output.info["loras"] = loras
            return output
        finally:
            self.preset = self.model.preset
