"""The SparkLayer purchase document (contract v2 §5): the one place that knows its keys.

A purchase is read **tolerantly**: unknown fields are kept (in the payload snapshot, and by the
write-back, which sends the purchase back as read), optional fields may be missing or ``""``, and
a value of the wrong shape never raises out of here: it becomes a problem of that purchase, which
the order rules queue as one ``DATA`` exception with the purchase as received. One bad entry in
a list of purchases (even a JSON array where an object belongs) stops nothing else.

The pydantic models type the *structure* of the document (objects, arrays, money); the scalar
values the order rules check in bulk (quantities, amounts, texts) are kept as sent, so the
vectorised checks in ``domain/purchases.py`` can say exactly what is wrong with each one
("line 2 quantity 2.5 is not a positive whole number").

What the contract marks **[assumed]** about purchases, all in this module:
- the SKU of a line is ``identifiers.sku``;
- there is no unit-price field: unit net = ``line_total.total_net`` ÷ ``quantity`` (the domain
  derives it from the columns this module fills);
- a cancelled purchase says so in ``calculated_fulfilment_status`` (``CANCELLED_FULFILMENT``);
- a purchase is paid when its method is ``platform_upfront`` or its transactions applied to the
  balance cover ``calculated_total`` (:func:`applied_total`);
- transactions are a bare array of ``{"total": money, "apply_to_balance": bool}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Final

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from b2b_pipeline.domain.exceptions import to_payload
from b2b_pipeline.domain.purchases import RAW_LINE_COLUMNS, RAW_ORDER_COLUMNS, RawPurchases

# --- the vocabulary ----------------------------------------------------------------------------
PURCHASE_TYPES: Final = ("order", "order_unconfirmed", "awaiting_approval", "quote", "cart")
PAYMENT_METHODS: Final = ("on_account", "invoice", "platform_upfront")
PAID_AT_CHECKOUT: Final = "platform_upfront"
# Methods whose orders arrive unpaid and are invoiced on the customer's terms.
PAY_LATER_METHODS: Final = ("on_account", "invoice")
CANCELLED_FULFILMENT: Final = "cancelled"  # [assumed]
# Fields the server calculates: a PUT must not carry them (contract §5).
CALCULATED_PREFIX: Final = "calculated_"

NOT_AN_OBJECT: Final = "the purchase is not a JSON object"

# A scalar as the wire may send it; the domain checks the value itself.
Scalar = str | int | float | bool | None


class _Tolerant(BaseModel):
    """Unknown fields are kept; nothing is coerced behind the reader's back."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Money(_Tolerant):
    number: Scalar = None
    currency: Scalar = None


class LineTotal(_Tolerant):
    total_net: Money | Scalar = None
    total_tax: Money | Scalar = None
    total_gross: Money | Scalar = None
    discount_net: Money | Scalar = None


class LineIdentifiers(_Tolerant):
    sku: Scalar = None  # [assumed] key


class LineItem(_Tolerant):
    identifiers: LineIdentifiers = Field(default_factory=LineIdentifiers)
    name_parent: Scalar = None
    quantity: Scalar = None
    line_total: LineTotal = Field(default_factory=LineTotal)
    tax_lines: list[Any] = Field(default_factory=list)


class Package(_Tolerant):
    identifiers: dict[str, Any] = Field(default_factory=dict)
    line_items: list[LineItem] = Field(default_factory=list)
    shipments: list[Any] = Field(default_factory=list)


class PurchaseIdentifiers(_Tolerant):
    sparklayer: Scalar = None
    platform: Scalar = None
    internal: Scalar = None
    visible: Scalar = None


class CustomerIdentifiers(_Tolerant):
    sparklayer: Scalar = None
    platform: Scalar = None


class PurchaseDates(_Tolerant):
    created_at: Scalar = None
    updated_at: Scalar = None
    placed_at: Scalar = None


class Purchase(_Tolerant):
    """A purchase as SparkLayer serves it (order, quote, cart, ...)."""

    type: Scalar = None
    purchase_identifiers: PurchaseIdentifiers = Field(default_factory=PurchaseIdentifiers)
    customer_identifiers: CustomerIdentifiers = Field(default_factory=CustomerIdentifiers)
    payment_method: Scalar = None
    customer_reference: Scalar = None
    currency_code: Scalar = None
    dates: PurchaseDates = Field(default_factory=PurchaseDates)
    revision_date: Scalar = None
    calculated_total: Money | Scalar = None
    calculated_fulfilment_status: Scalar = None
    packages: list[Package] | None = None
    accounting_files: list[Any] = Field(default_factory=list)
    custom_fields: list[Any] = Field(default_factory=list)


# --- small readers (used by the client, the sensor and the flows) ------------------------------


def _text(value: Any) -> str | None:
    """Identifiers and free text as strings; ``""`` and whitespace read as missing."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, int | float):
        return str(value)
    return None


def _child(record: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(record, Mapping):
            return None
        record = record.get(key)
    return record


def purchase_id(raw: Any) -> str | None:
    """The SparkLayer id of a purchase (``purchase_identifiers.sparklayer``), or None."""
    return _text(_child(raw, "purchase_identifiers", "sparklayer"))


def visible_id(raw: Any) -> str | None:
    """The order number the buyer sees (``SL-100042``), or None."""
    return _text(_child(raw, "purchase_identifiers", "visible"))


def internal_id(raw: Any) -> str | None:
    """The ERP order number written back (``purchase_identifiers.internal``), or None."""
    return _text(_child(raw, "purchase_identifiers", "internal"))


def customer_id(raw: Any) -> str | None:
    return _text(_child(raw, "customer_identifiers", "sparklayer"))


def purchase_type(raw: Any) -> str | None:
    return _text(_child(raw, "type"))


def purchase_updated_at(raw: Any) -> pd.Timestamp | None:
    """``dates.updated_at`` in UTC, or None when missing or unreadable."""
    value = _child(raw, "dates", "updated_at")
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = pd.Timestamp(value)
    except (ValueError, TypeError):
        return None
    if moment is pd.NaT:
        return None
    return moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")


def placed_or_created_at(raw: Any) -> Any:
    """``dates.placed_at``, else ``dates.created_at`` (as sent), for month-end bucketing."""
    return _text(_child(raw, "dates", "placed_at")) or _text(_child(raw, "dates", "created_at"))


def is_cancelled(raw: Any) -> bool:
    return _text(_child(raw, "calculated_fulfilment_status")) == CANCELLED_FULFILMENT


def gross_total(raw: Any) -> Any:
    """``calculated_total.number`` as sent (a decimal string), or None."""
    total = _child(raw, "calculated_total")
    return total.get("number") if isinstance(total, Mapping) else total


def currency_of(raw: Any) -> str | None:
    """``currency_code``, else the currency of ``calculated_total``."""
    return _text(_child(raw, "currency_code")) or _text(_child(raw, "calculated_total", "currency"))


def write_back_body(purchase: Mapping[str, Any], internal: str) -> dict[str, Any]:
    """The PUT body that writes the ERP order number into a purchase (contract §5).

    The purchase exactly as just read (type unchanged, packages, identifiers, custom fields and
    accounting files kept, unknown fields kept) less the server-calculated fields, with only
    ``purchase_identifiers.internal`` set. Sending back what was *just* read, not the copy read
    at intake, is what keeps a buyer's later edit (or cancellation) from being overwritten.
    """
    body = {
        key: value
        for key, value in json.loads(json.dumps(purchase)).items()
        if not key.startswith(CALCULATED_PREFIX)
    }
    identifiers = body.get("purchase_identifiers")
    body["purchase_identifiers"] = {
        **(identifiers if isinstance(identifiers, dict) else {}),
        "internal": internal,
    }
    return body


def applied_total(transactions: Iterable[Any]) -> float:
    """Sum of the transactions applied to the purchase's balance [assumed shape]."""
    total = 0.0
    for transaction in transactions:
        if not isinstance(transaction, Mapping) or transaction.get("apply_to_balance") is not True:
            continue
        amount = _child(transaction, "total", "number")
        if amount is None:
            amount = transaction.get("total")
        try:
            total += float(amount)
        except (TypeError, ValueError):
            continue
    return total


# --- a batch of purchases -> the columns the order rules read ----------------------------------


def _amount(money: Any) -> Any:
    """The ``number`` of a money object, or the value itself when the wire sent a bare one."""
    return money.number if isinstance(money, Money) else money


# Pydantic names the member of a union it tried inside an error location; a reader needs the
# document path only.
_UNION_MEMBERS = frozenset({"str", "int", "float", "bool", "none", "Money"})


def _where(location: tuple[int | str, ...]) -> str:
    """A pydantic error location as a reader sees it: ``packages[0].line_items[1].quantity``."""
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part not in _UNION_MEMBERS:
            text += f".{part}" if text else part
    return text


def _structure_problems(error: ValidationError) -> list[str]:
    problems: dict[str, str] = {}
    for item in error.errors(include_url=False):
        where = _where(tuple(item["loc"]))
        if item["type"] == "list_type":
            problem = f"{where} is not a list"
        elif len(item["loc"]) and item["loc"][-1] in _UNION_MEMBERS - {"Money"}:
            problem = f"{where} is an object or a list where one value belongs"
        else:
            problem = f"{where} is not an object"
        # A union reports each alternative it tried; one problem per place is enough.
        problems.setdefault(where, problem)
    return list(problems.values())


# Where each column of the order rules comes from in the document, for messages a reader acts on.
ORDER_FIELDS: Final = {
    "portal_order_id": "purchase_identifiers.sparklayer",
    "visible_id": "purchase_identifiers.visible",
    "type": "type",
    "customer_sparklayer_id": "customer_identifiers.sparklayer",
    "accounting_id": "customer accounting_id",
    "company_name": "customer company_name",
    "currency": "currency_code",
    "payment_method": "payment_method",
    "po_number": "customer_reference (PO number)",
    "portal_net": "line_total.total_net of the lines",
    "portal_tax": "line_total.total_tax of the lines",
    "portal_gross": "calculated_total",
    "placed_at": "dates.placed_at",
    "updated_at": "dates.updated_at",
}
LINE_FIELDS: Final = {
    "sku": "sku",
    "quantity": "quantity",
    "portal_unit_price": "line_total.total_net",
    "portal_line_net": "line_total.total_net",
    "portal_line_tax": "line_total.total_tax",
}


def read_purchases(raw_purchases: list[Any]) -> RawPurchases:
    """Read a batch of purchases into the columns the order rules take; never raises on a bad
    purchase (its problems are returned with it)."""
    orders: dict[str, list[Any]] = {name: [] for name in RAW_ORDER_COLUMNS}
    lines: dict[str, list[Any]] = {name: [] for name in RAW_LINE_COLUMNS}
    problems: dict[int, list[str]] = {}

    def add_order(**values: Any) -> None:
        for name, column in orders.items():
            column.append(values.get(name))

    for position, raw in enumerate(raw_purchases):
        if not isinstance(raw, Mapping):
            problems[position] = [NOT_AN_OBJECT]
            add_order(position=position, payload=to_payload(raw))
            continue
        try:
            purchase = Purchase.model_validate(raw)
        except ValidationError as error:
            problems[position] = _structure_problems(error)
            add_order(
                position=position,
                portal_order_id=purchase_id(raw),
                visible_id=visible_id(raw),
                payload=to_payload(raw),
            )
            continue
        method = _text(purchase.payment_method)
        add_order(
            position=position,
            portal_order_id=_text(purchase.purchase_identifiers.sparklayer),
            visible_id=_text(purchase.purchase_identifiers.visible),
            type=_text(purchase.type),
            fulfilment_status=_text(purchase.calculated_fulfilment_status),
            customer_sparklayer_id=_text(purchase.customer_identifiers.sparklayer),
            currency=purchase.currency_code if isinstance(purchase.currency_code, str) else None,
            payment_method=method,
            # Paid at checkout; other methods are paid only by applied transactions, which the
            # intake reads for the few orders whose ERP status needs it (see applied_total).
            paid=method == PAID_AT_CHECKOUT,
            po_number=_text(purchase.customer_reference),
            portal_gross_raw=_amount(purchase.calculated_total),
            placed_at_raw=purchase.dates.placed_at or None,
            updated_at_raw=purchase.dates.updated_at,
            payload=to_payload(raw),
        )
        items = [item for package in purchase.packages or [] for item in package.line_items]
        if not items:
            problems.setdefault(position, []).append("the purchase has no line items")
            continue
        for line_no, item in enumerate(items, start=1):
            lines["position"].append(position)
            lines["line_no"].append(line_no)
            lines["sku"].append(_text(item.identifiers.sku))
            lines["quantity_raw"].append(item.quantity)
            lines["line_net_raw"].append(_amount(item.line_total.total_net))
            lines["line_tax_raw"].append(_amount(item.line_total.total_tax))
    return RawPurchases(
        orders=pd.DataFrame(
            {
                name: pd.Series(values, dtype="int64" if name == "position" else object)
                for name, values in orders.items()
            }
        ),
        lines=pd.DataFrame(
            {
                name: pd.Series(
                    values, dtype="int64" if name in ("position", "line_no") else object
                )
                for name, values in lines.items()
            }
        ),
        problems=problems,
        order_fields=ORDER_FIELDS,
        line_fields=LINE_FIELDS,
        unreadable=frozenset(pos for pos, found in problems.items() if found == [NOT_AN_OBJECT]),
    )
