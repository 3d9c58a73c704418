"""Property-based requests over the whole OpenAPI spec (schemathesis), against a real `serve` on
loopback: schemathesis's default checks on every operation, with a fixed seed and a bounded number of
examples. Server-sent event streams are left out: they answer forever, by design."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, seed, settings

from support.server import Server

MAX_EXAMPLES = 12


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir: Path = tmp_path_factory.mktemp("schemathesis")
    srv = Server(data_dir, workers=0, env={"FRAMEPACK_API_WEBHOOK_SECRET": "schemathesis",
                                               "FRAMEPACK_API_UI_ENABLED": "false"})
    srv.start(timeout=300)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def api_schema(served: Server) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{served.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.exclude(path_regex=r"^/events").parametrize()
@seed(20261202)
@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_operation_answers_a_server_error(case: schemathesis.Case) -> None:
    case.call_and_validate(timeout=60)
