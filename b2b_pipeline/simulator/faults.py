"""Injected trouble for ``/api`` calls: rate limiting, errors, slowness, conflicts, bad bodies.

Configured with ``PUT /_sim/faults``; the body replaces the whole configuration (a key left out
goes back to its default, so ``{}`` switches every fault off). Nothing here ever touches the
``/_sim/`` endpoints.

Determinism: one ``random.Random(seed)`` is consumed in request order, exactly four draws per
call that passes the rate limiter and ``fail_next`` (error?, which 5xx?, conflict?, malformed?,
drawn for every call, read or write, whenever a rate or a latency is set), so the same seed and
the same sequence of calls give the same faults. The rate limiter is a
token bucket on the monotonic clock and therefore not part of that sequence.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from b2b_pipeline.simulator.problems import ApiError, problem_item
from b2b_pipeline.simulator.validation import (
    FieldErrors,
    boolean,
    integer,
    number,
    require_object,
)

INJECTED_SERVER_ERRORS = (500, 502, 503)


class TokenBucket:
    """``rate`` requests per second on average, at most ``burst`` at once."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()

    def take(self) -> float | None:
        """Take one token; ``None`` when allowed, else the seconds until one is free."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        return (1.0 - self._tokens) / self.rate


@dataclass
class FailRule:
    """Fail the next ``count`` calls to ``method endpoint`` with ``status``."""

    method: str | None  # None matches every method
    endpoint: str  # a path template ("/api/v1/purchases") or a concrete path
    status: int
    count: int

    def matches(self, method: str, endpoint: str, path: str) -> bool:
        return (self.method is None or self.method == method) and self.endpoint in (
            endpoint,
            path,
        )


@dataclass
class FaultSettings:
    requests_per_second: float | None = None
    burst: int | None = None
    error_rate: float = 0.0
    latency_ms: float = 0.0
    conflict_rate: float = 0.0
    malformed_rate: float = 0.0
    seed: int | None = None
    reject_all_tokens: bool = False
    fail_next: list[FailRule] = field(default_factory=list)

    @classmethod
    def from_body(cls, body: Any) -> FaultSettings:
        body = require_object(body, "fault configuration")
        errors = FieldErrors()
        rates = {
            key: number(errors, body, key, default=0.0, minimum=0.0, maximum=1.0)
            for key in ("error_rate", "conflict_rate", "malformed_rate")
        }
        rps = number(errors, body, "requests_per_second", minimum=0.001)
        settings = cls(
            requests_per_second=rps,
            burst=integer(errors, body, "burst", minimum=1),
            latency_ms=number(errors, body, "latency_ms", default=0.0, minimum=0.0) or 0.0,
            seed=integer(errors, body, "seed"),
            reject_all_tokens=boolean(errors, body, "reject_all_tokens", default=False),
            fail_next=_fail_rules(errors, body.get("fail_next")),
            **{key: value or 0.0 for key, value in rates.items()},
        )
        errors.raise_if_any("fault configuration")
        return settings

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests_per_second": self.requests_per_second,
            "burst": self.burst,
            "error_rate": self.error_rate,
            "latency_ms": self.latency_ms,
            "conflict_rate": self.conflict_rate,
            "malformed_rate": self.malformed_rate,
            "seed": self.seed,
            "reject_all_tokens": self.reject_all_tokens,
            "fail_next": [
                {"method": r.method, "endpoint": r.endpoint, "status": r.status, "count": r.count}
                for r in self.fail_next
                if r.count > 0
            ],
        }


def _fail_rules(errors: FieldErrors, raw: Any) -> list[FailRule]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        errors.add("invalid-type", "fail_next must be an array.", "fail_next")
        return []
    rules = []
    for i, entry in enumerate(raw):
        prefix = f"fail_next[{i}]."
        if not isinstance(entry, dict) or not isinstance(entry.get("endpoint"), str):
            errors.add("invalid-value", f"{prefix}endpoint is required.", prefix + "endpoint")
            continue
        status = integer(errors, entry, "status", minimum=400, prefix=prefix)
        method = entry.get("method")
        if status is None:
            errors.add("required", f"{prefix}status is required (400-599).", prefix + "status")
            continue
        rules.append(
            FailRule(
                method=method.upper() if isinstance(method, str) and method != "*" else None,
                endpoint=entry["endpoint"],
                status=status,
                count=integer(errors, entry, "count", default=1, minimum=0, prefix=prefix) or 0,
            )
        )
    return rules


class FaultVerdict(NamedTuple):
    """What the draws decided for a call that was let through."""

    conflict: bool  # applies to writes only
    malformed: bool  # applies to successful responses with a body


NO_FAULTS = FaultVerdict(conflict=False, malformed=False)


class FaultInjector:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.configure(FaultSettings())

    def configure(self, settings: FaultSettings) -> None:
        with self._lock:
            self.settings = settings
            self._random = random.Random(settings.seed)
            rps = settings.requests_per_second
            self._bucket = (
                TokenBucket(rps, settings.burst or max(1, math.ceil(rps))) if rps else None
            )

    @property
    def reject_all_tokens(self) -> bool:
        return self.settings.reject_all_tokens

    def before_request(self, method: str, endpoint: str, path: str) -> FaultVerdict:
        """Raise the injected refusal for this call, or say which later faults apply."""
        with self._lock:
            settings = self.settings
            if self._bucket is not None:
                wait = self._bucket.take()
                if wait is not None:
                    retry_after = max(1, math.ceil(wait))
                    raise _injected(
                        429,
                        "rate-limited",
                        f"Rate limit exceeded; retry after {retry_after} s.",
                        {"Retry-After": str(retry_after)},
                    )
            for rule in settings.fail_next:
                if rule.count > 0 and rule.matches(method, endpoint, path):
                    rule.count -= 1
                    headers = {"Retry-After": "1"} if rule.status == 429 else None
                    raise _injected(
                        rule.status, "injected-failure", "Injected failure (fail_next).", headers
                    )
            if settings.latency_ms == 0 and not (
                settings.error_rate or settings.conflict_rate or settings.malformed_rate
            ):
                return NO_FAULTS
            draw = self._random.random
            error, which, conflict, malformed = draw(), draw(), draw(), draw()
        if settings.latency_ms:
            time.sleep(settings.latency_ms / 1000.0)
        if error < settings.error_rate:
            status = INJECTED_SERVER_ERRORS[int(which * len(INJECTED_SERVER_ERRORS))]
            raise _injected(status, "injected-error", "Injected server error.")
        return FaultVerdict(
            conflict=conflict < settings.conflict_rate,
            malformed=malformed < settings.malformed_rate,
        )


def _injected(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> ApiError:
    return ApiError(status, message, [problem_item(code, message, "")], headers=headers)
