"""The business mapping file (``B2B_MAPPINGS``), loaded and validated at start-up.

Validation is pydantic's: an invalid file stops the pipeline with a message that names the key
and the problem, e.g. ``payment_methods.card: 'PENDING_PAYMENT' is never allowed``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DEFAULT_MAPPINGS_PATH = Path(__file__).with_name("mappings.default.yaml")

ErpOrderStatus = Literal["TO_BE_INVOICED", "PAID", "PENDING_PAYMENT", "ON_HOLD", "CANCELLED"]
# Statuses a portal payment method may map to. PENDING_PAYMENT is refused: nothing ever confirms
# an on-account order, so it would wait for ever and block fulfilment (the seed's failure #2).
ALLOWED_PAYMENT_STATUSES = {"TO_BE_INVOICED", "PAID", "ON_HOLD"}
# Purchase types that are never real orders (contract v2 §5): quotes and carts are not orders,
# and an order awaiting approval has not been approved by the buyer's company.
NEVER_LIVE_TYPES = {"quote", "cart", "awaiting_approval"}
LIVE_TYPE_CHOICES = {"order", "order_unconfirmed"}
# Version 1 of the SparkLayer contract guessed these names; a file that still uses them is
# refused (no silent fallback), with the new name in the message.
RENAMED_KEYS = {"live_statuses": "live_types"}
RENAMED_PAYMENT_METHODS = {
    "pay_on_account": "on_account",
    "pay_by_invoice": "invoice",
    "card": "platform_upfront",
}


class InvalidMappings(ValueError):
    """The mapping file is invalid; the message names the file, the key and the problem."""


class TaxTreatment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tax_exempt: bool


class AutoCreateDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_group: str
    price_list_code: str
    payment_terms: str
    tax_code: str
    credit_limit: float = Field(ge=0)


class Mappings(BaseModel):
    """The operating model as configuration (contracts/mappings.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customer_groups: dict[str, str]
    on_hold_group: str = "on-hold"
    stock_locations: dict[str, str]
    tax_codes: dict[str, TaxTreatment]
    payment_methods: dict[str, ErpOrderStatus]
    live_types: list[str] = ["order"]
    price_tolerance: float = Field(0.01, ge=0)
    unmapped_customer_policy: Literal["queue", "auto_create"] = "queue"
    auto_create_defaults: AutoCreateDefaults | None = None

    @field_validator("payment_methods")
    @classmethod
    def _never_pending_payment(cls, value: dict[str, str]) -> dict[str, str]:
        old = [method for method in value if method in RENAMED_PAYMENT_METHODS]
        if old:
            renamed = ", ".join(f"{m} -> {RENAMED_PAYMENT_METHODS[m]}" for m in old)
            raise ValueError(
                f"uses the old SparkLayer payment method names; rename {renamed} "
                "(SparkLayer API v2: on_account, invoice, platform_upfront)"
            )
        if "" in value:
            raise ValueError("an empty payment method cannot be mapped; it is always an exception")
        for method, status in value.items():
            if status not in ALLOWED_PAYMENT_STATUSES:
                raise ValueError(
                    f"{method!r} maps to {status!r}; an order must land approved "
                    f"({', '.join(sorted(ALLOWED_PAYMENT_STATUSES))}), never pending payment"
                )
        return value

    @field_validator("live_types")
    @classmethod
    def _only_real_orders_are_live(cls, value: list[str]) -> list[str]:
        never = sorted(set(value) & NEVER_LIVE_TYPES)
        if never:
            raise ValueError(f"{never} are not real orders and can never be live types")
        unknown = sorted(set(value) - LIVE_TYPE_CHOICES)
        if unknown:
            raise ValueError(
                f"{unknown} are not SparkLayer purchase types that can be live "
                f"(choose from {sorted(LIVE_TYPE_CHOICES)})"
            )
        if not value:
            raise ValueError("at least one live type is needed, e.g. [order]")
        return value

    def model_post_init(self, __context: object) -> None:
        if self.unmapped_customer_policy == "auto_create" and self.auto_create_defaults is None:
            raise ValueError("unmapped_customer_policy auto_create needs auto_create_defaults")


def load_mappings(path: Path | str | None = None) -> Mappings:
    """Load and validate a mapping file; ``None`` means the shipped default."""
    source = Path(path) if path else DEFAULT_MAPPINGS_PATH
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise InvalidMappings(f"mapping file {source} does not exist") from exc
    except yaml.YAMLError as exc:
        raise InvalidMappings(f"mapping file {source} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise InvalidMappings(f"mapping file {source} must be a YAML mapping of keys to values")
    old_keys = [key for key in RENAMED_KEYS if key in raw]
    if old_keys:
        renamed = ", ".join(f"{key} -> {RENAMED_KEYS[key]}" for key in old_keys)
        raise InvalidMappings(
            f"mapping file {source} uses keys of the old SparkLayer contract; rename {renamed} "
            "(live_types takes purchase types, e.g. [order])"
        )
    try:
        return Mappings.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(file)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise InvalidMappings(f"mapping file {source} is invalid: {problems}") from None


@lru_cache(maxsize=8)
def _cached(path: str | None) -> Mappings:
    return load_mappings(path)


def mappings_from_env() -> Mappings:
    """The mappings named by ``B2B_MAPPINGS`` (cached per path)."""
    import os

    return _cached(os.environ.get("B2B_MAPPINGS") or None)
