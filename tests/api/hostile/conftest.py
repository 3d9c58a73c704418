"""One real app per database (SQLite file, PostgreSQL schema) for the hostile-input suite."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from framepack_api.api.app import create_app
from framepack_api.settings import Settings

from support.hostile import Target

PG_SERVER = os.environ.get("FRAMEPACK_API_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_schema() -> Iterator[str]:
    try:
        admin = sa.create_engine(PG_SERVER, connect_args={"connect_timeout": 3})
        with admin.begin() as conn:
            schema = f"t_{uuid.uuid4().hex[:12]}"
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    except Exception as exc:  # unreachable server: skip like the other PostgreSQL tests
        pytest.skip(f"PostgreSQL at {PG_SERVER} unreachable: {exc.__class__.__name__}")
    sep = "&" if "?" in PG_SERVER else "?"
    yield f"{PG_SERVER}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    admin.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    data_dir = tmp_path_factory.mktemp(f"hostile-{request.param}")
    urls = _pg_schema() if request.param == "postgresql" else iter([f"sqlite:///{data_dir / 'jobs.db'}"])
    url = next(urls)
    settings = Settings(model="tiny", data_dir=data_dir, database_url=url, workers=0, max_resolution=640,
                        webhook_secret="hostile-test", _env_file=None)  # type: ignore[call-arg]
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        target = Target(client, settings)
        yield target
        target.engine.dispose()
    next(urls, None)  # drops the PostgreSQL schema


