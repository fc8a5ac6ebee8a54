"""Counts of ``/api`` calls, to measure how many calls a sync needed against the minimum.

Every ``/api`` call is counted, the token call and refused calls included, with its status.
The per-call log keeps the last :data:`LOG_SIZE` calls so that a long benchmark cannot make
the simulator's memory grow without bound.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from typing import Any

LOG_SIZE = 20_000


class CallLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_endpoint: Counter[str] = Counter()
        self._log: deque[dict[str, Any]] = deque(maxlen=LOG_SIZE)
        self._total = 0

    def record(self, method: str, path: str, endpoint: str, status: int, items: int | None) -> None:
        entry = {
            "method": method,
            "path": path,
            "endpoint": endpoint,
            "status": status,
            "items": items,
        }
        with self._lock:
            self._total += 1
            self._by_endpoint[f"{method} {endpoint}"] += 1
            self._log.append(entry)

    def clear(self) -> None:
        with self._lock:
            self._total = 0
            self._by_endpoint.clear()
            self._log.clear()

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": self._total,
                "by_endpoint": dict(self._by_endpoint),
                "log": list(self._log),
            }
