"""Field checks for request bodies and query strings.

A :class:`FieldErrors` collects every problem of one request before anything is applied, so a
400 names all the bad fields at once and a refused batch changes nothing (batch writes are
atomic). The checkers return the clean value, or ``None`` after recording a problem.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Any

from b2b_pipeline.simulator.problems import invalid, invalid_field, problem_item

MISSING = object()


class FieldErrors:
    """Problems found in one request body; ``line`` set for rows of an array body."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, code: str, message: str, prop: str, *, line: int | None = None) -> None:
        if line is None:
            self.items.append(problem_item(code, message, prop))
        else:
            self.items.append(
                problem_item(code, message, f"[{line}].{prop}", line=line, field=prop)
            )

    def raise_if_any(self, what: str) -> None:
        if not self.items:
            return
        lines = {item["line"] for item in self.items if "line" in item}
        if lines:
            detail = f"{len(lines)} row(s) of the {what} are invalid; nothing was applied."
        elif len(self.items) == 1:
            detail = f"The {what} is invalid: {self.items[0]['message']}"
        else:
            messages = " ".join(item["message"] for item in self.items[:5])
            more = f" (and {len(self.items) - 5} more)" if len(self.items) > 5 else ""
            detail = f"The {what} has {len(self.items)} problems: {messages}{more}"
        raise invalid(detail, self.items)


def is_number(value: Any) -> bool:
    """A JSON number that is neither a boolean nor infinite."""
    return (type(value) is int) or (type(value) is float and math.isfinite(value))


def text(
    errors: FieldErrors,
    body: dict[str, Any],
    key: str,
    *,
    required: bool = False,
    max_len: int = 255,
    prefix: str = "",
    line: int | None = None,
) -> str | None:
    value = body.get(key, MISSING)
    prop = prefix + key
    if value is MISSING or value is None:
        if required:
            errors.add("required", f"{prop} is required.", prop, line=line)
        return None
    if type(value) is not str:
        errors.add("invalid-type", f"{prop} must be a string.", prop, line=line)
        return None
    if required and not value.strip():
        errors.add("required", f"{prop} must not be empty.", prop, line=line)
        return None
    if len(value) > max_len:
        errors.add("too-long", f"{prop} is longer than {max_len} characters.", prop, line=line)
        return None
    return value


def number(
    errors: FieldErrors,
    body: dict[str, Any],
    key: str,
    *,
    default: float | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    prefix: str = "",
) -> float | None:
    value = body.get(key)
    prop = prefix + key
    if value is None:
        return default
    if not is_number(value):
        errors.add("invalid-type", f"{prop} must be a number.", prop)
        return default
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        errors.add("out-of-range", f"{prop} must be between {minimum} and {maximum}.", prop)
        return default
    return value


def integer(
    errors: FieldErrors,
    body: dict[str, Any],
    key: str,
    *,
    default: int | None = None,
    minimum: int | None = None,
    prefix: str = "",
) -> int | None:
    value = body.get(key)
    prop = prefix + key
    if value is None:
        return default
    if type(value) is not int:
        errors.add("invalid-type", f"{prop} must be an integer.", prop)
        return default
    if minimum is not None and value < minimum:
        errors.add("out-of-range", f"{prop} must be at least {minimum}.", prop)
        return default
    return value


def boolean(
    errors: FieldErrors, body: dict[str, Any], key: str, *, default: bool, prefix: str = ""
) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if type(value) is not bool:
        errors.add("invalid-type", f"{prefix}{key} must be true or false.", prefix + key)
        return default
    return value


def iso_date(
    errors: FieldErrors, body: dict[str, Any], key: str, *, prefix: str = ""
) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except (TypeError, ValueError):
        errors.add("invalid-value", f"{prefix}{key} must be an ISO-8601 date.", prefix + key)
        return None


def iso_datetime(
    errors: FieldErrors, body: dict[str, Any], key: str, *, prefix: str = ""
) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if type(value) is str:
        try:
            datetime.fromisoformat(value)
            return value
        except ValueError:
            pass
    errors.add("invalid-value", f"{prefix}{key} must be an ISO-8601 date-time.", prefix + key)
    return None


def one_of(
    errors: FieldErrors,
    body: dict[str, Any],
    key: str,
    allowed: tuple[str, ...],
    *,
    default: str | None = None,
    required: bool = False,
) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            errors.add("required", f"{key} is required.", key)
        return default
    if value not in allowed:
        errors.add("invalid-value", f"{key} must be one of {', '.join(allowed)}.", key)
        return default
    return value


def require_object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid_field("body", f"The {what} must be a JSON object.", "invalid-type")
    return body


def require_array(body: Any, what: str, max_items: int) -> list[Any]:
    """An array body of at most ``max_items`` rows (the API's batch limit)."""
    if not isinstance(body, list):
        raise invalid_field("body", f"The {what} must be a JSON array.", "invalid-type")
    if len(body) > max_items:
        raise invalid_field(
            "body",
            f"At most {max_items} items per call; this {what} has {len(body)}.",
            "too-many-items",
        )
    return body


def query_int(
    query: dict[str, str], name: str, *, default: int, minimum: int, maximum: int | None = None
) -> int:
    """A paging parameter; out of range is a 400 naming the parameter, never silently clamped."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid_field(name, f"{name} must be an integer.", "invalid-type") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise invalid_field(name, f"{name} must be {bound}; got {value}.", "out-of-range")
    return value
