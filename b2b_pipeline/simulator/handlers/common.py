"""Small pieces shared by the handlers: paging, money, vocabularies."""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from typing import Any

from b2b_pipeline.simulator.validation import FieldErrors

# Contract limits (§2-§5).
MAX_V2_PAGE_SIZE = 250
MAX_PURCHASES_LIMIT = 500
MAX_BATCH_ITEMS = 500
MAX_SYNC_LOG_ERRORS = 5000
MAX_SLUG_LENGTH = 30
MAX_NAME_LENGTH = 64
MAX_KEY_LENGTH = 64  # SKUs, external ids, account codes
MAX_TEXT_LENGTH = 255

# Vocabularies of contract v2 (§2, §5).
PAYMENT_METHODS = ("on_account", "invoice", "platform_upfront")
PURCHASE_TYPES = ("order", "order_unconfirmed", "awaiting_approval", "quote", "cart")
# Types of a purchase the buyer has placed: it gets dates.placed_at when it first becomes one.
PLACED_TYPES = ("order", "order_unconfirmed", "awaiting_approval")
PROCESSING = "processing"  # calculated_fulfilment_status of a newly placed order
CANCELLED = "cancelled"  # [assumed] the cancellation marker
FULFILMENT_STATUSES = (PROCESSING, "partially_fulfilled", "fulfilled", CANCELLED)  # [assumed]
DEFAULT_CURRENCY = "GBP"


def pagination(page: int, page_size: int, total: int) -> dict[str, int]:
    """The v2 pagination object; an empty collection still has one (empty) page."""
    return {
        "current_page": page,
        "total_pages": max(1, math.ceil(total / page_size)),
        "page_size": page_size,
        "total": total,
    }


def money(amount: Decimal, currency: str) -> dict[str, str]:
    return {"number": f"{amount:.2f}", "currency": currency}


def currency_code(errors: FieldErrors, body: dict[str, Any], key: str, *, prefix: str = "") -> str:
    value = body.get(key)
    if value is None:
        return DEFAULT_CURRENCY
    if not (isinstance(value, str) and len(value) == 3 and value.isalpha()):
        errors.add(
            "invalid-value", f"{prefix}{key} must be a 3-letter currency code.", prefix + key
        )
        return DEFAULT_CURRENCY
    return value.upper()


def money_field(
    errors: FieldErrors, body: dict[str, Any], key: str, *, prefix: str = "", required: bool = False
) -> dict[str, str] | None:
    """A money object ``{"number": "<decimal string>", "currency": "GBP"}``."""
    value = body.get(key)
    prop = prefix + key
    if value is None:
        if required:
            errors.add("required", f"{prop} is required.", prop)
        return None
    if not isinstance(value, dict) or not isinstance(value.get("number"), str):
        errors.add("invalid-type", f"{prop} must be {{number: decimal string, currency}}.", prop)
        return None
    try:
        amount = Decimal(value["number"])
    except InvalidOperation:
        errors.add("invalid-value", f"{prop}.number is not a decimal number.", prop + ".number")
        return None
    if not amount.is_finite():
        errors.add("invalid-value", f"{prop}.number is not a decimal number.", prop + ".number")
        return None
    return {
        "number": value["number"],
        "currency": currency_code(errors, value, "currency", prefix=prop + "."),
    }
