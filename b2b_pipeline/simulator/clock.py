"""Timestamps for the simulated portal.

Every change gets a strictly later ``updated_at`` than the one before (``max(now, last + 1 µs)``),
so a client cursor on ``(updated_at, id)`` never meets two changes at the same instant. The
fixed-width form ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` sorts as text in time order, which lets the
purchase index compare strings instead of parsing dates on every request.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

_ONE_MICROSECOND = timedelta(microseconds=1)
_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_timestamp(moment: datetime) -> str:
    """The wire form of a UTC instant (naive values are taken as UTC)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.strftime(_FORMAT)


def parse_timestamp(text: str) -> datetime:
    """An ISO-8601 date-time (``Z``, an offset or naive UTC) as an aware UTC datetime."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class ChangeClock:
    """Hands out strictly increasing UTC timestamps, one per change."""

    def __init__(self, last: datetime | None = None) -> None:
        self._last = last or datetime(1970, 1, 1, tzinfo=UTC)
        self._lock = threading.Lock()

    @property
    def last(self) -> datetime:
        return self._last

    def tick(self) -> str:
        with self._lock:
            now = datetime.now(UTC)
            self._last = now if now > self._last else self._last + _ONE_MICROSECOND
            return format_timestamp(self._last)
