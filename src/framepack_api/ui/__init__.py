"""A Gradio page over the public HTTP API (optional extra ``ui``): see docs/UI.md.

Nothing here imports gradio at package import time, so ``framepack_api.ui`` can be probed cheaply;
``framepack_api.ui.app`` is the module that needs it.
"""
