"""How the console writes numbers, money, times and ages (Jinja filters).

Money with two decimals and thousands separators (``1,204.80 GBP``), times in UTC to the minute,
ages in the largest unit that reads naturally ("3 h 20 min", "2 d 4 h"), missing values as a
dash: what a person reads on a statement, never ``NaT`` or ``9.5``.
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime
from typing import Any

import pandas as pd

MISSING = "–"


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # lists, dicts: present
        return False


def money(value: Any, currency: str | None = None) -> str:
    if is_missing(value):
        return MISSING
    try:
        amount = float(value)
    except (TypeError, ValueError):
        return str(value)
    text = f"{amount:,.2f}"
    return f"{text} {currency}" if currency and not is_missing(currency) else text


def number(value: Any) -> str:
    if is_missing(value):
        return MISSING
    try:
        amount = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{int(amount):,}" if amount.is_integer() else f"{amount:,.4f}".rstrip("0")


def utc_time(value: Any, *, seconds: bool = False) -> str:
    """A moment in UTC, ``2025-01-14 15:30 UTC``; a missing end of period reads "now"."""
    if is_missing(value):
        return MISSING
    moment = pd.Timestamp(value)
    moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")


def age(hours: Any) -> str:
    """An age given in hours, in words: "45 min", "3 h 20 min", "2 d 4 h"."""
    if is_missing(hours):
        return MISSING
    minutes = max(round(float(hours) * 60), 0)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 24 * 60:
        whole, rest = divmod(minutes, 60)
        return f"{whole} h {rest} min" if rest else f"{whole} h"
    days, rest = divmod(minutes, 24 * 60)
    hours_left = rest // 60
    return f"{days} d {hours_left} h" if hours_left else f"{days} d"


def age_since(moment: Any, now: datetime | None = None) -> str:
    if is_missing(moment):
        return MISSING
    when = pd.Timestamp(moment)
    when = when.tz_localize("UTC") if when.tzinfo is None else when
    now = now or datetime.now(UTC)
    return age((pd.Timestamp(now) - when).total_seconds() / 3600.0)


def pretty_json(value: Any) -> str:
    """JSON text indented for reading; text that is not JSON is shown as it is."""
    if is_missing(value):
        return MISSING
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def plain(value: Any) -> Any:
    """A value as a template shows it: missing values (NaN, NaT, NA) become None."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return None if is_missing(value) else value


def words(value: Any) -> str:
    """A detail value as a person reads it: ``{"accept": "erp_price"}`` reads "accept:
    erp_price" (not a Python dict), a list is comma-separated, anything else as it is."""
    if isinstance(value, dict):
        return ", ".join(f"{key.replace('_', ' ')}: {words(item)}" for key, item in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(words(item) for item in value)
    return MISSING if is_missing(value) else str(value)


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of ``frame`` as dicts for a template, missing values as None."""
    return [
        {str(key): plain(value) for key, value in row.items()}
        for row in frame.to_dict(orient="records")
    ]


def record(row: pd.Series) -> dict[str, Any]:
    return {str(key): plain(value) for key, value in row.to_dict().items()}


def is_dagster_run(run_id: Any) -> bool:
    """Whether a recorded run id names a Dagster run (Dagster's run ids are UUIDs; the command
    line's own reconciliation records ``cli-reconcile-<uuid>``, which the UI has no page for)."""
    if not isinstance(run_id, str):
        return False
    try:
        return str(uuid.UUID(run_id)) == run_id.lower()
    except ValueError:
        return False


def run_origin(run_id: Any) -> str:
    """A run that is not Dagster's, in words."""
    if isinstance(run_id, str) and run_id.startswith("cli-"):
        return "command line"
    return MISSING if is_missing(run_id) else str(run_id)[:16]


FILTERS = {
    "money": money,
    "number": number,
    "utc": utc_time,
    "age": age,
    "age_since": age_since,
    "pretty_json": pretty_json,
    "words": words,
    "run_origin": run_origin,
}
TESTS = {"dagster_run": is_dagster_run}
