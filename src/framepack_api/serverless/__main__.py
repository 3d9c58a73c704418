"""Run serverless events locally, or start a RunPod worker.

    python -m framepack_api.serverless EVENT.json [--out video.mp4] [--repeat N]
    python -m framepack_api.serverless --runpod [--stream]

Each invocation's response is printed as one JSON line on stdout. With ``--out`` the MP4 is written
to that file and ``video_b64`` is shortened in the printed response. ``--repeat`` runs the same event
again in the same process, i.e. warm, the way a reused Lambda environment would.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from framepack_api.serverless.handlers import InvocationFailed, lambda_handler, start_runpod_worker


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m framepack_api.serverless", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("event", nargs="?", type=Path, help="a JSON file: direct, API Gateway v1 or v2 event")
    parser.add_argument("--out", type=Path, help="write the MP4 here")
    parser.add_argument("--repeat", type=int, default=1, help="invoke N times in this process (warm)")
    parser.add_argument("--runpod", action="store_true", help="start a RunPod serverless worker")
    parser.add_argument("--stream", action="store_true",
                        help="with --runpod: the generator handler, streaming progress before the output")
    return parser


def _body(response: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The body of a response of either shape, and whether it was a proxy response."""
    if "statusCode" in response and isinstance(response.get("body"), str):
        return json.loads(response["body"]), True
    return response, False


def _save_video(response: dict[str, Any], out: Path) -> dict[str, Any]:
    """Write the MP4 from the response to ``out``; return the response with the base64 elided."""
    body, proxy = _body(response)
    video_b64 = body.get("video_b64")
    if not isinstance(video_b64, str):
        return response
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(base64.b64decode(video_b64))
    body = {**body, "video_b64": f"<{len(video_b64)} base64 characters, written to {out}>"}
    return {**response, "body": json.dumps(body)} if proxy else body


def _status(response: dict[str, Any]) -> int:
    body, proxy = _body(response)
    if proxy:
        return int(response["statusCode"])
    return int(body.get("status", 200))


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    # Unknown options are the runpod SDK's own (e.g. --test_input); it reads them from sys.argv itself.
    args, unknown = parser.parse_known_args(argv)
    if unknown and not args.runpod:
        parser.error(f"unrecognised arguments: {' '.join(unknown)}")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.runpod:
        try:
            start_runpod_worker(stream=args.stream)
        except ImportError:
            print("the runpod package is not installed: pip install 'framepack-api[runpod]'", file=sys.stderr)
            return 2
        return 0
    if args.event is None:
        parser.error("give an EVENT.json file, or --runpod")
    event = json.loads(args.event.read_text(encoding="utf-8"))
    failed = False
    for i in range(max(args.repeat, 1)):
        started = time.perf_counter()
        try:
            response = lambda_handler(event, None)
        except InvocationFailed as exc:  # a failed direct invocation: Lambda would see it raised
            response = exc.body
        seconds = time.perf_counter() - started
        status = _status(response)
        failed = failed or status != 200
        if args.out is not None:
            response = _save_video(response, args.out)
        print(json.dumps(response), flush=True)
        print(f"invocation {i + 1}: status {status} in {seconds:.2f} s", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
