"""The exception catalogue: every reason the pipeline can stop a record, in one place.

Each reason has exactly one category (so a reader tells at a glance whether it is about pricing
or order authorisation), the team that acts, and what they do. The runbook
(``docs/runbook.md``) explains each one in the same words; keep the two together.

Domain rules build exception rows with :func:`exception_frame`; the audit store files them in the
``exceptions`` table (contracts/audit-and-finance.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pandas as pd


class Category(StrEnum):
    PRICING = "PRICING"
    AUTHORISATION = "AUTHORISATION"
    MAPPING = "MAPPING"
    DATA = "DATA"
    TRANSPORT = "TRANSPORT"


@dataclass(frozen=True)
class Reason:
    code: str
    category: Category
    owner: str  # the team that acts
    action: str  # what they do, in plain words


REASONS: dict[str, Reason] = {
    r.code: r
    for r in [
        # Orders
        Reason(
            "PRICE_MISMATCH",
            Category.PRICING,
            "finance",
            "Compare the portal and ERP totals; approve with the ERP price or the portal "
            "price, or fix the price list and retry.",
        ),
        Reason(
            "NO_ERP_PRICE",
            Category.PRICING,
            "ecommerce",
            "Add the SKU to the account's ERP price list, then retry the order.",
        ),
        Reason(
            "UNMAPPED_ACCOUNT",
            Category.MAPPING,
            "account manager",
            "Approve with the ERP account code for this company (the portal is updated and "
            "the order retried), or create the ERP account first.",
        ),
        Reason(
            "UNKNOWN_ACCOUNT",
            Category.MAPPING,
            "account manager",
            "The portal's accounting_id names no ERP account: correct it in the portal or "
            "approve with the right account code.",
        ),
        Reason(
            "UNKNOWN_SKU",
            Category.MAPPING,
            "ecommerce",
            "Create the product in the ERP (or correct the SKU in the portal), then retry.",
        ),
        Reason(
            "UNMAPPED_TAX_CODE",
            Category.MAPPING,
            "finance",
            "Add the ERP tax code to tax_codes in the mapping file, then retry.",
        ),
        Reason(
            "TAX_TREATMENT_MISMATCH",
            Category.MAPPING,
            "finance",
            "The portal and the ERP disagree on whether the account pays tax: fix the "
            "account's tax code in the ERP or its tax exemption in the portal, then retry.",
        ),
        Reason(
            "UNMAPPED_PAYMENT_METHOD",
            Category.MAPPING,
            "finance",
            "Add the payment method to payment_methods in the mapping file, then retry.",
        ),
        Reason(
            "UNMAPPED_CUSTOMER_GROUP",
            Category.MAPPING,
            "ecommerce",
            "Add the ERP customer group to customer_groups in the mapping file.",
        ),
        Reason(
            "UNMAPPED_WAREHOUSE",
            Category.MAPPING,
            "operations",
            "Add the ERP warehouse to stock_locations in the mapping file.",
        ),
        Reason(
            "CURRENCY_MISMATCH",
            Category.MAPPING,
            "finance",
            "The order's currency differs from the ERP account's currency: correct the "
            "account or the order, then retry.",
        ),
        Reason(
            "ACCOUNT_ON_HOLD",
            Category.AUTHORISATION,
            "credit control",
            "Release the credit hold in the ERP and retry, or approve to post the order "
            "ON_HOLD, or ignore it and tell the customer.",
        ),
        Reason(
            "ACCOUNT_INACTIVE",
            Category.AUTHORISATION,
            "credit control",
            "Reactivate the ERP account and retry, or ignore the order.",
        ),
        Reason(
            "OVER_CREDIT_LIMIT",
            Category.AUTHORISATION,
            "credit control",
            "Raise the credit limit in the ERP and retry, or ignore the order and tell the "
            "customer.",
        ),
        Reason(
            "MALFORMED_ORDER",
            Category.DATA,
            "ecommerce",
            "The order arrived incomplete or unreadable; correct it in the portal and retry.",
        ),
        Reason(
            "TOTALS_DO_NOT_ADD_UP",
            Category.DATA,
            "ecommerce",
            "The order's lines do not add up to its checkout total; correct the order in the "
            "portal (or ask SparkLayer support), then retry.",
        ),
        Reason(
            "WRITE_BACK_REFUSED",
            Category.DATA,
            "ecommerce",
            "The order is in the ERP, but the portal refused to record the ERP order number on "
            "it (reason in the message); correct the portal order, then retry.",
        ),
        # Master data
        Reason(
            "INVALID_ERP_RECORD",
            Category.DATA,
            "ERP owner",
            "Correct the ERP record named in the message; the next sync sends it.",
        ),
        Reason(
            "PORTAL_REJECTED_ROW",
            Category.PRICING,
            "ecommerce",
            "The portal refused a price row (reason in the message); correct it in the ERP "
            "and the next sync sends it.",
        ),
        Reason(
            "PORTAL_REJECTED_RECORD",
            Category.DATA,
            "ecommerce",
            "The portal refused a record (reason in the message); correct it in the ERP.",
        ),
        Reason(
            "PRICE_LIST_SYNC_FAILED",
            Category.PRICING,
            "ecommerce",
            "A price list did not update for a customer; the next sync retries. If it "
            "persists, check the list in the portal.",
        ),
        Reason(
            "PORTAL_PRICE_DIFFERS",
            Category.PRICING,
            "finance",
            "The price probe found the portal would charge this account a different price "
            "from the ERP's; run the price sync with full_comparison (or wait for the nightly "
            "one) to restore the ERP's prices, or correct the ERP if the portal is right. It "
            "resolves itself when a later probe finds them equal.",
        ),
        Reason(
            "PORTAL_LIMIT_EXCEEDED",
            Category.DATA,
            "ecommerce",
            "A sync would take the portal past one of SparkLayer's hard data limits (named in "
            "the message), so nothing new of that kind was sent; reduce the data or ask "
            "SparkLayer to raise the limit. It resolves itself once back within the limit.",
        ),
        # Transport
        Reason(
            "PORTAL_UNREACHABLE",
            Category.TRANSPORT,
            "IT / integration",
            "SparkLayer could not be reached after retries; the next run retries by itself.",
        ),
        Reason(
            "ERP_UNREACHABLE",
            Category.TRANSPORT,
            "IT / integration",
            "The ERP database could not be reached after retries; the next run retries.",
        ),
    ]
}

EXCEPTION_COLUMNS = [
    "entity",
    "entity_key",
    "account_code",
    "category",
    "reason_code",
    "message",
    "payload",
]


def to_payload(record: Any) -> str:
    """A JSON snapshot of a record as received (kept with the exception, so nothing is lost)."""
    return json.dumps(record, default=str, sort_keys=True)


def exception_frame(rows: list[dict[str, Any]] | pd.DataFrame | None = None) -> pd.DataFrame:
    """Exception rows in the queue's shape; ``category`` is filled from ``reason_code``.

    Each row needs ``entity``, ``entity_key``, ``reason_code`` and ``message``; ``account_code``
    and ``payload`` (a JSON string) are optional.
    """
    frame = pd.DataFrame(rows if rows is not None else [], columns=None)
    for column in EXCEPTION_COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    if len(frame):
        unknown = set(frame["reason_code"]) - set(REASONS)
        if unknown:
            raise KeyError(f"unknown reason codes {sorted(unknown)}: add them to REASONS")
        frame["category"] = frame["reason_code"].map(lambda c: REASONS[c].category.value)
    return frame[EXCEPTION_COLUMNS].astype(object)
