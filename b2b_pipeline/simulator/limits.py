"""SparkLayer's hard data limits (contract §1), which the simulated portal enforces with a 400.

The simulator keeps its own copy rather than importing the client's ``wire.HARD_LIMITS``: it
plays an independent system, and a client whose guard drifted from the portal's must be caught
by the portal refusing, not hidden by shared code.
"""

from __future__ import annotations

from typing import Final

from b2b_pipeline.simulator.problems import ApiError, problem_item

HARD_LIMITS: Final = {
    "price_lists": 15_000,
    "customer_groups": 100,
    "customers": 250_000,
    "products": 50_000,  # distinct SKUs priced by any list
    "line_items": 250,  # per cart, quote or order
    "addresses": 500,  # per customer
}
LIMIT_EXCEEDED: Final = "limit-exceeded"  # [assumed] problem code

_WHAT = {
    "price_lists": "price lists",
    "customer_groups": "customer groups",
    "customers": "customers",
    "products": "priced products (distinct SKUs)",
    "line_items": "line items per purchase",
    "addresses": "addresses per customer",
}


def limit_exceeded(limit: str, would_be: int, prop: str) -> ApiError:
    """A 400 naming the limit, its value and what the request would have made of it."""
    message = (
        f"SparkLayer's hard limit of {HARD_LIMITS[limit]:,} {_WHAT[limit]} would be passed "
        f"({would_be:,}); nothing was applied."
    )
    return ApiError(400, message, [problem_item(LIMIT_EXCEEDED, message, prop)])


def check_limit(limit: str, would_be: int, prop: str) -> None:
    if would_be > HARD_LIMITS[limit]:
        raise limit_exceeded(limit, would_be, prop)
