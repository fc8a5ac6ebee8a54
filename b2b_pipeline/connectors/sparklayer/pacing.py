"""Client-side pacing of SparkLayer calls (pyrate-limiter token bucket).

SparkLayer publishes no numeric rate limit, so the client paces itself as well as honouring 429s.
The contract asks for one budget shared by all the calls a process makes to a portal: every
``SparkLayerClient`` for the same base URL, site and rate therefore gets the same limiter from
:func:`shared_limiter` (Dagster resources build a client per run or per thread; they all draw
from one bucket). A limiter lives as long as a client uses it. Across processes (Kubernetes or
Celery workers), each process has its own budget: set ``requests_per_second`` to the portal's
allowance divided by the number of concurrent workers, or swap the in-memory bucket for
pyrate-limiter's Redis or PostgreSQL bucket here.
"""

from __future__ import annotations

import threading
import time
import weakref
from math import ceil

from pyrate_limiter import Limiter, Rate, SingleBucketFactory, StateBucket, TokenBucket

# pyrate-limiter sleeps ``wait + buffer_ms`` when the bucket is empty; its default of 50 ms would
# halve the throughput of a 20 requests/second budget. The monotonic clock needs no drift margin.
_BUFFER_MS = 1

_LIMITERS: weakref.WeakValueDictionary[tuple[str, str, float, int], Limiter] = (
    weakref.WeakValueDictionary()
)
_LIMITERS_LOCK = threading.Lock()


def token_bucket(requests_per_second: float, burst: int) -> Limiter:
    """A limiter admitting ``requests_per_second`` on average, ``burst`` at once after a pause."""
    if requests_per_second <= 0:
        raise ValueError(f"requests_per_second must be positive, not {requests_per_second}")
    if burst < 1:
        raise ValueError(f"burst must be at least 1, not {burst}")
    # Rate takes integers: express the rate per 1,000 seconds so fractional rates stay exact.
    rate = Rate(max(1, round(requests_per_second * 1000)), 1_000_000, burst=burst)
    bucket = StateBucket([rate], algorithm=TokenBucket())
    # The token bucket keeps constant state; it has nothing to leak, so no leaker thread.
    return Limiter(SingleBucketFactory(bucket, schedule_leak=False), buffer_ms=_BUFFER_MS)


def default_burst(requests_per_second: float) -> int:
    """One second's worth of calls may go at once after an idle spell."""
    return max(1, ceil(requests_per_second))


def shared_limiter(
    base_url: str, site_id: str, requests_per_second: float, burst: int | None = None
) -> Limiter:
    """The process-wide limiter for one portal site at one rate."""
    burst = default_burst(requests_per_second) if burst is None else burst
    key = (base_url.rstrip("/"), site_id, float(requests_per_second), burst)
    with _LIMITERS_LOCK:
        limiter = _LIMITERS.get(key)
        if limiter is None:
            limiter = token_bucket(requests_per_second, burst)
            _LIMITERS[key] = limiter
        return limiter


def wait_for_turn(limiter: Limiter) -> float:
    """Block until the limiter admits one call; return the seconds spent waiting."""
    started = time.monotonic()
    if not limiter.try_acquire("sparklayer", blocking=True):
        # Only possible if a single call weighed more than the burst, which a weight of 1 cannot.
        raise RuntimeError("the SparkLayer rate limiter can never admit a call")
    return time.monotonic() - started
