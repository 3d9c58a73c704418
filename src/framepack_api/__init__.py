"""framepack-api: a durable job server for FramePack video and image generation."""

__version__ = "0.1.0"
