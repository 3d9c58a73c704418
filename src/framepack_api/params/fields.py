"""Field types that refuse what a lax parser lets through: booleans as numbers, NaN and infinities,
and text that a database cannot store.

pydantic's lax mode turns ``true`` into ``1`` and ``"nan"`` into a float NaN; PostgreSQL refuses a
NUL character in text, and a lone UTF-16 surrogate cannot be encoded as UTF-8 at all. Every
parameter model uses these types, so every way in (HTTP forms and JSON, serverless events) refuses
the same values with an error that names the field.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    return value


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or None."""
    if "\x00" in value:
        return "must not contain a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must not contain a lone UTF-16 surrogate"
    return None


def _storable(value: str) -> str:
    problem = text_problem(value)
    if problem:
        raise ValueError(problem)
    return value


StrictInt = Annotated[int, BeforeValidator(_no_bool)]
# For an optional bounded int, put the bounds in front of this: `Annotated[int, Field(ge=.., le=..), NoBool] | None`.
# (Behind the validator pydantic still enforces them but writes `ge`/`le`, not minimum/maximum, into the schema.)
NoBool = BeforeValidator(_no_bool)
FiniteFloat = Annotated[float, BeforeValidator(_no_bool), AfterValidator(_finite)]
Text = Annotated[str, AfterValidator(_storable)]
