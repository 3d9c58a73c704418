"""The log formats in-process: JSON lines with the context's ids (nested contexts restore the outer
ids, threads started with a copied context keep them), exceptions included, and the text format's ids."""

from __future__ import annotations

import contextvars
import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from framepack_api.logs import TEXT_FORMAT, ContextIds, JsonFormatter, log_context


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, logging.StreamHandler[io.StringIO]]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(ContextIds())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("framepack_api.test_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, out, handler
    logger.removeHandler(handler)


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_lines_carry_the_context_ids(captured: tuple[logging.Logger, io.StringIO, logging.Handler]) -> None:
    logger, out, _ = captured
    logger.info("before")
    with log_context(worker_id="w1"):
        logger.info("idle %s", "worker")
        with log_context(job_id="j1"):
            logger.warning("in a job")
            thread = threading.Thread(target=contextvars.copy_context().run, args=(logger.info, "heartbeat"))
            thread.start()
            thread.join()
        logger.info("after the job")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    got = lines(out)
    assert [(e["message"], e.get("worker_id"), e.get("job_id")) for e in got] == [
        ("before", None, None), ("idle worker", "w1", None), ("in a job", "w1", "j1"), ("heartbeat", "w1", "j1"),
        ("after the job", "w1", None), ("failed", None, None)]
    assert got[2]["level"] == "WARNING" and got[2]["logger"] == "framepack_api.test_logs"
    assert str(got[0]["time"]).endswith("Z") and "ValueError: boom" in str(got[-1]["exception"])


def test_text_format_shows_the_ids(captured: tuple[logging.Logger, io.StringIO, logging.Handler]) -> None:
    logger, out, handler = captured
    handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    with log_context(worker_id="w2", job_id="j2"):
        logger.info("step")
    logger.info("plain")
    first, second = out.getvalue().splitlines()
    assert first.endswith("] worker=w2 job=j2 step")
    assert second.endswith("] plain")
