from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.server import Server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real server with one embedded worker, shared by a module's tests."""
    srv = Server(tmp_path_factory.mktemp("serve")).start()
    yield srv
    srv.stop()


@pytest.fixture
def fresh_server_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"
