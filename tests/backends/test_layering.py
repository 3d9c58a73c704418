"""The backends know no SQL package: they import their parameter models from `framepack_api.params`."""

from __future__ import annotations

import ast
from pathlib import Path

import framepack_api

PACKAGE = Path(framepack_api.__file__).parent


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def offending_imports(package: str, forbidden: tuple[str, ...]) -> dict[str, set[str]]:
    found = {}
    for path in sorted((PACKAGE / package).rglob("*.py")):
        bad = {m for m in imported_modules(path) if m.startswith(forbidden)}
        if bad:
            found[str(path.relative_to(PACKAGE))] = bad
    return found


def test_backends_import_nothing_from_the_store_or_sql() -> None:
    assert offending_imports("backends", ("framepack_api.jobs", "sqlalchemy", "alembic")) == {}


def test_params_depend_on_nothing_of_the_service() -> None:
    forbidden = ("framepack_api.jobs", "framepack_api.api", "framepack_api.backends", "sqlalchemy", "fastapi")
    assert offending_imports("params", forbidden) == {}


def test_the_checker_sees_a_store_import() -> None:
    # the guard itself must be able to fail: the API does import the store
    assert offending_imports("api", ("framepack_api.jobs",)) != {}
