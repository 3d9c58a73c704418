"""Parameters of video jobs: FramePack image-to-video (seed 000/001) and forwarded remote jobs.

Ranges follow FramePack's own Gradio page, so a job that the page accepts, the API accepts.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from framepack_api.params.fields import FiniteFloat, NoBool, StrictInt, Text
from framepack_api.params.image import LoraFields
from framepack_api.params.keyframes import MAX_KEYFRAMES, KeyframeError, describe_keyframes, keyframe_sections
from framepack_api.params.prompt_schedule import ScheduleError, check_length, describe_schedule, parse_schedule

SamplingMode = Literal["reverse", "forward"]
ExtensionOutput = Literal["whole", "new"]


class VideoParams(LoraFields):
    """FramePack image-to-video parameters (seed 000/001), with FramePack's defaults."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    prompt: Text = Field("", max_length=4000,
                         description="What happens in the video. A schedule gives each stretch of time its own "
                                     "prompt: `[0s] a girl stands [2s] she waves`, or a JSON list "
                                     "`[{\"start\": 0, \"prompt\": \"...\"}]` (as text or, in a JSON body, "
                                     "as a list); each section uses the prompt in force at its start.",
                         examples=["The girl dances gracefully, with clear movements, full of charm."])
    negative_prompt: Text = Field("", max_length=4000, description="Used only when cfg > 1.",
                                 examples=["blurry, distorted"])
    seed: StrictInt = Field(-1, ge=-1, le=2**32 - 1, description="-1 draws a random seed; the job records it.",
                      examples=[31337])
    video_length: FiniteFloat = Field(5.0, gt=0, le=120, description="Length in seconds (30 fps).", examples=[5])
    latent_window_size: StrictInt = Field(9, ge=1, le=33, description="Latent frames per section.",
                                    examples=[9])
    steps: StrictInt = Field(25, ge=1, le=100, description="Sampling steps per section.", examples=[25])
    cfg: FiniteFloat = Field(1.0, ge=1.0, le=32.0, description="Real classifier-free guidance scale.",
                       examples=[1.0])
    gs: FiniteFloat = Field(10.0, ge=1.0, le=32.0, description="Distilled guidance scale.", examples=[10.0])
    rs: FiniteFloat = Field(0.0, ge=0.0, le=1.0, examples=[0.0],
                      description="CFG re-scale (FramePack's `rs`): with cfg > 1, the guided prediction "
                                  "is re-scaled to the standard deviation of the conditional one and "
                                  "mixed in by this fraction (0 = off). No effect when cfg = 1.")
    gpu_memory_preservation: FiniteFloat = Field(6.0, ge=0, le=128,
                                           description="GB left free on the GPU in the group memory mode: "
                                                       "fewer transformer blocks stay resident as it grows.",
                                           examples=[6])
    use_teacache: bool = Field(True, description="Cache transformer blocks between steps (faster).",
                               examples=[True])
    mp4_crf: StrictInt = Field(16, ge=0, le=51, description="x264 CRF of the MP4: 0 lossless, 51 worst.",
                         examples=[16])
    sampling_mode: SamplingMode = Field("reverse", description="reverse = FramePack, forward = F1.",
                                         examples=["reverse"])
    resolution: Annotated[int, Field(ge=64, le=1280), NoBool] | None = Field(None,
                                   description="Bucket size; default from the server's DEFAULT_RESOLUTION.",
                                   examples=[640])
    has_end_image: bool = Field(False, description="Set by the server when an end_image was uploaded.")
    keyframe_times: list[FiniteFloat] = Field(
        default_factory=list, max_length=MAX_KEYFRAMES,
        description="Seconds at which the `keyframe_images` (same order) are pinned; reverse sampling only. "
                    "Each anchors the section whose end is nearest its time; times must be in "
                    "(0, video_length] and anchor different sections (the end image anchors the last).",
        examples=[[2.0]])
    # Video extension (docs/API.md#video-extension): the job continues an input video by
    # `video_length` seconds, sampling forward from its encoded end.
    extend_job_id: Text | None = Field(None, max_length=64,
                                       description="Extend the video of this completed video job of yours "
                                                   "(instead of uploading a `video`).")
    extension_output: ExtensionOutput = Field("whole", description="With an input video: `whole` = the input "
                                                                   "followed by the new frames, `new` = the new "
                                                                   "frames only.")
    has_input_video: bool = Field(False, description="Set by the server when the job extends a video.")
    remixed_from: Text | None = Field(None, max_length=64,
                                      description="Set by the server: the video this job remixes (OpenAI remix).")

    @model_validator(mode="before")
    @classmethod
    def _extension_samples_forward(cls, data: Any) -> Any:
        # Extension is F1's forward sampling; it is the default then, and an explicit reverse is refused.
        if isinstance(data, dict) and data.get("has_input_video") and data.get("sampling_mode") in (None, ""):
            return {**data, "sampling_mode": "forward"}
        return data

    @field_validator("prompt", mode="before")
    @classmethod
    def _schedule_list_as_text(cls, value: Any) -> Any:
        # A JSON body may give the list form as a list; it is kept as its JSON text, so that
        # `prompt` is always a string for every reader of stored params.
        if isinstance(value, list):
            return json.dumps(value, ensure_ascii=False)
        return value

    @field_validator("prompt")
    @classmethod
    def _schedule_is_well_formed(cls, value: str) -> str:
        try:
            parse_schedule(value)
        except ScheduleError as exc:
            raise ValueError(f"prompt schedule: {exc}") from None
        return value

    @model_validator(mode="after")
    def _extension_is_forward(self) -> VideoParams:
        if self.has_input_video and self.sampling_mode == "reverse":
            raise ValidationError.from_exception_data(type(self).__name__, [InitErrorDetails(
                type=PydanticCustomError("extension_sampling", "extending a video samples forward (F1): "
                                                               "leave sampling_mode out or set 'forward'"),
                loc=("sampling_mode",), input=self.sampling_mode)]) from None
        return self

    @model_validator(mode="after")
    def _schedule_fits_the_video(self) -> VideoParams:
        cues = parse_schedule(self.prompt)
        if cues is not None:
            try:
                check_length(cues, self.video_length)
            except ScheduleError as exc:
                # Raised as the prompt's error (not the model's), so a 422 names the field.
                raise ValidationError.from_exception_data(type(self).__name__, [InitErrorDetails(
                    type=PydanticCustomError("prompt_schedule", "prompt schedule: {problem}",
                                             {"problem": str(exc)}),
                    loc=("prompt",), input=self.prompt)]) from None
        return self

    @model_validator(mode="after")
    def _keyframes_fit_the_video(self) -> VideoParams:
        if not self.keyframe_times:
            return self
        problem = None
        if self.sampling_mode != "reverse":
            problem = "keyframes need sampling_mode 'reverse'; forward (F1) sampling cannot take them"
        else:
            try:
                keyframe_sections(self.keyframe_times, self.video_length, self.sections(),
                                  self.latent_window_size, self.has_end_image)
            except KeyframeError as exc:
                problem = str(exc)
        if problem is not None:
            raise ValidationError.from_exception_data(type(self).__name__, [InitErrorDetails(
                type=PydanticCustomError("keyframes", "{problem}", {"problem": problem}),
                loc=("keyframe_times",), input=self.keyframe_times)]) from None
        return self

    def sections(self) -> int:
        return total_sections(self.video_length, self.latent_window_size)

    def prompt_schedule(self) -> list[dict[str, Any]] | None:
        """The parsed schedule with the sections each prompt conditions; None for a plain prompt."""
        return describe_schedule(self.prompt, self.sections(), self.latent_window_size)

    def keyframes(self) -> list[dict[str, Any]] | None:
        """Each keyframe's time and the section (1-based, time order) it anchors; None without any."""
        if not self.keyframe_times:
            return None
        return describe_keyframes(self.keyframe_times, self.sections(), self.latent_window_size)

    def total_steps(self) -> int:
        return self.sections() * self.steps


def total_sections(video_length: float, latent_window_size: int) -> int:
    """FramePack's mapping of seconds to sections at 30 fps."""
    return max(round(video_length * 30 / (latent_window_size * 4)), 1)


def frame_count(sections: int, latent_window_size: int) -> int:
    """Frames in the decoded video of a FramePack run."""
    return 4 * sections * latent_window_size + 1


class RemoteVideoParams(BaseModel):
    """A video job forwarded to an OpenAI-compatible /v1/videos server, in that API's own terms."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    prompt: Text = Field("", max_length=4000)
    model: Text = Field(min_length=1, max_length=128, description="The model asked of the remote server.")
    seconds: Text = Field("4", max_length=16)
    size: Text = Field("1280x720", max_length=32)
    extra: dict[str, Any] = Field(default_factory=dict, description="Model-specific fields passed through.")
