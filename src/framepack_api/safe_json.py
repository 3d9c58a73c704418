"""JSON from outside, parsed so that nothing in it can crash the server later.

Python's ``json`` accepts ``NaN``/``Infinity`` literals (not JSON), ``\\ud800`` escapes that decode to
lone surrogates (not encodable as UTF-8), ``\\u0000`` (PostgreSQL refuses NUL in text), and nests
until it raises RecursionError. ``loads`` refuses each of these with an ``InvalidInput`` that names
where in the document it was, so a client learns which field to fix. Used for every JSON request
body (api/request_guard.py) and for serverless proxy events.
"""

from __future__ import annotations

import json
from typing import Any

from framepack_api.errors import InvalidInput
from framepack_api.params.fields import text_problem

NOT_JSON = "not valid JSON"
MAX_DEPTH = 32  # far deeper than any request of this API; deep enough for arbitrary extra knobs


class _NonFinite:
    """Stands in for a NaN/Infinity literal until the walk can say where it was."""

    def __init__(self, literal: str) -> None:
        self.literal = literal


def field_name(path: list[str | int]) -> str:
    return ".".join(str(p) for p in path) or "body"


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse and check a JSON document. Raises InvalidInput naming the offending field."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput("body", f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        value = json.loads(data, parse_constant=_NonFinite)
    except RecursionError:
        raise InvalidInput("body", f"JSON is nested too deeply (the limit is {max_depth} levels)") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput("body", f"{NOT_JSON} ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    check(value, max_depth=max_depth)
    return value


def inspect_body(data: bytes, *, max_depth: int = MAX_DEPTH) -> None:
    """Refuse a request body that parses into something unsafe. A body that is not JSON at all is
    let through: each route answers that in its own dialect."""
    try:
        loads(data, max_depth=max_depth)
    except InvalidInput as exc:
        if not exc.problem.startswith(NOT_JSON):
            raise


def check(value: Any, *, max_depth: int = MAX_DEPTH) -> None:
    """Walk a parsed document without recursion; refuse the first value that cannot be kept."""
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        item, path = stack.pop()
        if len(path) > max_depth:
            raise InvalidInput(field_name(path[:max_depth]),
                               f"JSON is nested too deeply (the limit is {max_depth} levels)")
        if isinstance(item, _NonFinite):
            raise InvalidInput(field_name(path), f"{item.literal} is not a number JSON allows; "
                                                 "send a finite number")
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                raise InvalidInput(field_name(path), problem)
        elif isinstance(item, dict):
            for key, child in item.items():
                problem = text_problem(key)
                if problem:
                    raise InvalidInput(field_name(path), f"a key {problem}")
                stack.append((child, [*path, key]))
        elif isinstance(item, list):
            stack.extend((child, [*path, index]) for index, child in enumerate(item))
