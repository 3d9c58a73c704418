"""Property-based requests over the whole OpenAPI spec (schemathesis), against a real `serve` on
loopback: schemathesis's default checks on every operation, valid and invalid data, with a fixed seed
and a bounded number of examples. Among them: no 5xx, every status code documented for its operation,
every response body (errors included) valid against its declared schema, declared headers present,
invalid data refused, undeclared methods answered 405, and with auth on, no operation served without
credentials.

Two exceptions, each for a stated reason and only where it applies:
- "schema-valid data is accepted" is not asked of the operations in ``RULES_BEYOND_THE_SCHEMA``: their
  bodies carry images that must decode, LoRA names that must exist, and rules across fields that a
  JSON schema cannot state, so schema-valid data is rightly refused with a 4xx naming the field.
- ``/health`` and ``/ready`` answer their declared 503 when no worker is live, as in this API-only
  server; "no 5xx" is not asked of them (its body is still checked against the declared schema).
``GET /events`` is left out: it streams every job's events and never ends. The NUL character is not
generated: every text field, id, query and header refuses it by design (PostgreSQL cannot store it),
which tests/api/hostile/test_hostile_input.py checks field by field.

Each operation runs as its own Hypothesis test inside this one (schemathesis's pytest loader does not
run on pytest 9), and every operation's failures are collected before the test fails, so one run
lists them all.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import positive_data_acceptance

from support.server import Server

MAX_EXAMPLES = 10
SKIPPED = {"GET /events"}  # a stream that never ends
RULES_BEYOND_THE_SCHEMA = {
    "POST /generate": "images must decode; end_image needs reverse sampling; LoRA files; public webhook URLs",
    "POST /api/generate-image": "input_image must decode; LoRA files must exist in LORA_DIR",
    "POST /api/batch-images": "input_image must decode; at most one seed per prompt; LoRA files",
    "POST /api/transfer-image": "images and masks must decode; width and height come together; LoRA files",
    "POST /v1/videos": "input_reference must decode; seconds up to MAX_VIDEO_SECONDS; lora_scales per lora_paths",
    "POST /v1/videos/extensions": "video must decode as a video, or be the id of a completed video of the caller",
    "POST /v1/videos/{video_id}/remix": "prompt may carry a schedule whose syntax JSON Schema cannot state",
    "POST /v1/videos/edits": "not offered: every call answers OpenAI's 400 unsupported_endpoint, by design",
    "GET /v1/videos": "`after` must be the id of one of the caller's videos (else 400, as OpenAI's cursors)",
}
DESIGNED_5XX = {"GET /health": "503 without a live worker, declared with its body",
                "GET /ready": "503 without a live worker able to take the job type, declared with its body"}
API_KEY = "schemathesis-key"


def serve(data_dir: Path, **env: str) -> Server:
    srv = Server(data_dir, workers=0, env={"FRAMEPACK_API_WEBHOOK_SECRET": "schemathesis",
                                          "FRAMEPACK_API_UI_ENABLED": "false", **env})
    return srv.start(timeout=300)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = serve(tmp_path_factory.mktemp("schemathesis"))
    yield srv
    srv.stop()


def run_every_operation(server: Server, max_examples: int, headers: dict[str, str] | None = None) -> int:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", headers=headers or {})
    schema.config.generation.update(allow_x00=False)  # NUL is refused everywhere, on purpose (see above)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        if label in SKIPPED:
            continue
        operations += 1
        excluded = [positive_data_acceptance] if label in RULES_BEYOND_THE_SCHEMA else []
        if label in DESIGNED_5XX:
            excluded.append(not_a_server_error)
        try:
            check_operation(operation, server.url, max_examples, headers, excluded)
        except (Exception, FailureGroup) as exc:  # every failure is reported below, with its operation
            failures.append(f"{label}: {exc}"[:3000])
    assert not failures, "\n\n".join(failures)
    return operations


def check_operation(operation: Any, base_url: str, max_examples: int, headers: dict[str, str] | None,
                    excluded: list[Any]) -> None:
    strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                         operation.as_strategy(GenerationMode.NEGATIVE))

    @given(case=strategy)
    @seed(20261202)
    @settings(max_examples=max_examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=base_url, timeout=60, headers=headers, excluded_checks=excluded)

    check()


def test_no_operation_fails_the_default_checks(served: Server) -> None:
    assert run_every_operation(served, MAX_EXAMPLES) >= 30


def test_with_auth_on_every_operation_declares_and_enforces_its_security(tmp_path: Path) -> None:
    """With API keys set: the spec declares the schemes; schemathesis's ignored-auth check sends each
    operation without credentials and expects the declared 401, the rest runs with the key."""
    server = serve(tmp_path, FRAMEPACK_API_API_KEYS=API_KEY)
    try:
        assert run_every_operation(server, 2, {"Authorization": f"Bearer {API_KEY}"}) >= 30
    finally:
        server.stop()
