"""The baseline of bench/status_rate.py: one bare FastAPI route, served exactly as `serve` serves the API.

Same logging set-up (cli._logging), same uvicorn.Config (cli.uvicorn_config: log level, access log
as shipped, graceful-shutdown timeout), one process. The route answers a small JSON object with no
middleware, no database and no response model: what the framework costs on its own.

    python bench/_bare_server.py --port 8123
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvicorn
from fastapi import FastAPI

from framepack_api.cli import _logging, uvicorn_config
from framepack_api.settings import Settings


def create_bare_app() -> FastAPI:
    app = FastAPI()

    @app.get("/status/{job_id}")
    async def bare_status(job_id: str) -> dict[str, str]:
        return {"job_id": job_id, "status": "completed"}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    settings = Settings(host=args.host, port=args.port, _env_file=None)  # type: ignore[call-arg]
    _logging(settings)
    uvicorn.Server(uvicorn_config(create_bare_app(), settings)).run()


if __name__ == "__main__":
    main()
