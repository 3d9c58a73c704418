"""Entry file for platforms that start a handler script or name a handler by module path.

RunPod-style workers run ``python -u handler.py``: it loads the model once, then takes jobs.
AWS Lambda's image command may name ``handler.lambda_handler`` (or directly
``framepack_api.serverless.lambda_handler``). Everything lives in the installed package; this file
only re-exports it so the image does not need a copy of any logic.
"""

from framepack_api.serverless import handler, lambda_handler
from framepack_api.serverless.handlers import start_runpod_worker

__all__ = ["handler", "lambda_handler"]

if __name__ == "__main__":
    start_runpod_worker()
