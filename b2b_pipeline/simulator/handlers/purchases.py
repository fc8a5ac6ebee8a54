"""Purchases: orders, quotes and carts (contract §5).

The list is sorted by ``(dates.updated_at, id)`` and served from the state's sorted index, so
``updated_since`` is a bisect and a page is a slice, whatever the number of purchases.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from b2b_pipeline.simulator.clock import format_timestamp, parse_timestamp
from b2b_pipeline.simulator.handlers.common import (
    MAX_KEY_LENGTH,
    MAX_PURCHASES_LIMIT,
    PAYMENT_METHODS,
    PAYMENT_STATUSES,
    PURCHASE_STATUSES,
    PURCHASE_TYPES,
    currency_code,
    money_field,
)
from b2b_pipeline.simulator.problems import (
    already_exists,
    id_mismatch,
    invalid_field,
    not_found,
)
from b2b_pipeline.simulator.routes import Request, Response
from b2b_pipeline.simulator.state import PURCHASE_LOOKUPS, PortalState, new_id
from b2b_pipeline.simulator.validation import (
    FieldErrors,
    boolean,
    iso_datetime,
    one_of,
    query_int,
    require_object,
    text,
)

if TYPE_CHECKING:
    from b2b_pipeline.simulator.app import Portal

# Statuses in which a purchase has been placed by the buyer (it gets a placed_at).
UNPLACED_STATUSES = ("draft", "cart", "quote")
ORDER_STATUSES = ("awaiting_approval", "processing", "confirmed")


def type_for_status(status: str, current: str | None = None) -> str:
    """``quote`` and ``cart`` follow their status; a placed status makes an order."""
    if status in ("quote", "cart"):
        return status
    if status in ORDER_STATUSES:
        return "order"
    return current or "order"  # draft, cancelled: a cancelled quote stays a quote


def purchase_document(
    *,
    purchase_id: str,
    purchase_type: str,
    status: str,
    identifiers: dict[str, str | None],
    customer_identifiers: dict[str, str | None],
    created_at: str | None,
    placed_at: str | None,
    currency: str,
    calculated_total: dict[str, str],
    total_paid: dict[str, str],
    tax_lines: list[Any],
    line_items: list[Any],
    payment_method: str | None,
    payment_status: str,
    po_number: str | None,
    tax_exempt: bool,
    tax_number: str | None,
) -> dict[str, Any]:
    """A purchase in wire order (docs/architecture.md, "Wire shapes the simulator serves")."""
    return {
        "id": purchase_id,
        "type": purchase_type,
        "status": status,
        "purchase_identifiers": {
            "sparklayer": purchase_id,
            "platform": identifiers.get("platform"),
            "visible": identifiers.get("visible"),
            "internal": identifiers.get("internal"),
        },
        "customer_identifiers": {
            "sparklayer": customer_identifiers.get("sparklayer"),
            "platform": customer_identifiers.get("platform"),
        },
        "dates": {"created_at": created_at, "updated_at": None, "placed_at": placed_at},
        "currency": currency,
        "calculated_total": calculated_total,
        "total_paid": total_paid,
        "tax_lines": tax_lines,
        "line_items": line_items,
        "payment_method": payment_method,
        "payment_status": payment_status,
        "po_number": po_number,
        "tax_exempt": tax_exempt,
        "tax_number": tax_number,
    }


def list_purchases(portal: Portal, request: Request) -> Response:
    limit = query_int(
        request.query,
        "limit",
        default=MAX_PURCHASES_LIMIT,
        minimum=1,
        maximum=MAX_PURCHASES_LIMIT,
    )
    offset = query_int(request.query, "offset", default=0, minimum=0)
    since = request.query.get("updated_since")
    since_key = None
    if since:
        try:
            since_key = format_timestamp(parse_timestamp(since))
        except ValueError:
            raise invalid_field(
                "updated_since", "updated_since must be an ISO-8601 date-time."
            ) from None
    with portal.state.lock:
        page = portal.state.purchases_page(since_key, offset, limit)
    return Response(200, page)


def get_purchase(portal: Portal, request: Request) -> Response:
    lookup_by, identifier = _lookup(request)
    with portal.state.lock:
        purchase = portal.state.find_purchase(lookup_by, identifier)
    if purchase is None:
        raise not_found("purchase", identifier)
    return Response(200, purchase)


def put_purchase(portal: Portal, request: Request) -> Response:
    """Create (platform/internal lookups) or fully replace a purchase.

    The server keeps what it owns: ``id``, ``purchase_identifiers.sparklayer`` and ``visible``,
    ``dates.created_at``; every PUT bumps ``dates.updated_at``.
    """
    lookup_by, identifier = _lookup(request)
    body = require_object(request.body(), "purchase")
    identifiers = body.get("purchase_identifiers") or {}
    if not isinstance(identifiers, dict):
        raise invalid_field("purchase_identifiers", "purchase_identifiers must be an object.")
    if lookup_by == "sparklayer" and body.get("id") not in (None, identifier):
        raise id_mismatch("id", identifier)
    if identifiers.get(lookup_by) not in (None, identifier) or (
        lookup_by in ("platform", "internal") and identifiers.get(lookup_by) is None
    ):
        raise id_mismatch(f"purchase_identifiers.{lookup_by}", identifier)
    state = portal.state
    with state.lock:
        existing = state.find_purchase(lookup_by, identifier)
    resource = existing["id"] if existing else f"{lookup_by}:{identifier}"
    with portal.locks.hold(("purchase", resource)):
        fields = _parse_purchase(body, identifiers)
        with state.lock:
            existing = state.find_purchase(lookup_by, identifier)
            if existing is None and lookup_by in ("sparklayer", "visible"):
                raise not_found("purchase", identifier)
            purchase_id = existing["id"] if existing else new_id()
            _check_unique_identifiers(state, fields["identifiers"], purchase_id)
            customer_id = fields["customer_identifiers"].get("sparklayer")
            if customer_id is not None and customer_id not in state.customers:
                raise invalid_field(
                    "customer_identifiers.sparklayer", f"No customer {customer_id!r}.", "not-found"
                )
            if existing:
                fields["identifiers"]["visible"] = existing["purchase_identifiers"]["visible"]
                created_at = existing["dates"]["created_at"]
            else:
                fields["identifiers"]["visible"] = state.next_visible_identifier()
                created_at = None
            purchase = state.save_purchase(
                purchase_document(purchase_id=purchase_id, created_at=created_at, **fields)
            )
    return Response(200 if existing else 201, purchase)


def _parse_purchase(body: dict[str, Any], identifiers: dict[str, Any]) -> dict[str, Any]:
    errors = FieldErrors()
    status = one_of(errors, body, "status", PURCHASE_STATUSES, required=True)
    purchase_type = one_of(errors, body, "type", PURCHASE_TYPES)
    customer_identifiers = body.get("customer_identifiers")
    if not isinstance(customer_identifiers, dict):
        errors.add("required", "customer_identifiers is required.", "customer_identifiers")
        customer_identifiers = {}
    clean_identifiers: dict[str, str | None] = {}
    for kind in ("platform", "internal"):
        value = text(
            errors, identifiers, kind, max_len=MAX_KEY_LENGTH, prefix="purchase_identifiers."
        )
        clean_identifiers[kind] = value
    line_items = body.get("line_items")
    if not isinstance(line_items, list):
        errors.add("required", "line_items must be an array.", "line_items")
        line_items = []
    for i, item in enumerate(line_items):
        prefix = f"line_items[{i}]."
        if not isinstance(item, dict):
            errors.add("invalid-type", "A line item must be an object.", f"line_items[{i}]")
            continue
        text(errors, item, "sku", required=True, max_len=MAX_KEY_LENGTH, prefix=prefix)
        quantity = item.get("quantity")
        if type(quantity) is not int or quantity < 1:
            errors.add(
                "invalid-value", f"{prefix}quantity must be an integer >= 1.", prefix + "quantity"
            )
        money_field(errors, item, "unit_price", prefix=prefix, required=True)
    currency = currency_code(errors, body, "currency")
    zero = {"number": "0.00", "currency": currency}
    dates = body.get("dates") if isinstance(body.get("dates"), dict) else {}
    fields = {
        "purchase_type": purchase_type or type_for_status(status or "draft"),
        "status": status,
        "identifiers": clean_identifiers,
        "customer_identifiers": customer_identifiers,
        "placed_at": iso_datetime(errors, dates, "placed_at", prefix="dates."),
        "currency": currency,
        "calculated_total": money_field(errors, body, "calculated_total") or zero,
        "total_paid": money_field(errors, body, "total_paid") or zero,
        "tax_lines": body.get("tax_lines") if isinstance(body.get("tax_lines"), list) else [],
        "line_items": line_items,
        "payment_method": one_of(errors, body, "payment_method", PAYMENT_METHODS),
        "payment_status": one_of(
            errors, body, "payment_status", PAYMENT_STATUSES, default="pending"
        ),
        "po_number": text(errors, body, "po_number", max_len=MAX_KEY_LENGTH),
        "tax_exempt": boolean(errors, body, "tax_exempt", default=False),
        "tax_number": text(errors, body, "tax_number", max_len=MAX_KEY_LENGTH),
    }
    errors.raise_if_any("purchase")
    return fields


def _check_unique_identifiers(
    state: PortalState, identifiers: dict[str, str | None], purchase_id: str
) -> None:
    for kind in ("platform", "internal"):
        value = identifiers.get(kind)
        owner = state.purchase_by_identifier[kind].get(value) if value else None
        if owner is not None and owner != purchase_id:
            raise already_exists("purchase", value or "", f"purchase_identifiers.{kind}")


def _lookup(request: Request) -> tuple[str, str]:
    lookup_by = request.params["lookupBy"]
    if lookup_by not in PURCHASE_LOOKUPS:
        raise invalid_field("lookupBy", f"lookupBy must be one of {', '.join(PURCHASE_LOOKUPS)}.")
    return lookup_by, request.params["identifier"]
