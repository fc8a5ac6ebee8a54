"""What buyers do on the portal (``/_sim/`` only, contract §7): register, order, move purchases on.

``POST /_sim/orders`` answers 201 with the purchase exactly as ``GET /api/v1/purchases/...``
returns it (one package). Lines are priced by the portal's own rule (``simulator/pricing.py``)
unless a line gives ``unit_price`` (used as is, no discount: a way for demos to create price
drift); tax comes from the customer's ``tax_exempt``. The portal refuses, with 403, an order
from a group with ordering off or a payment method the group does not allow, and an
``on_account`` order that would take the balance over the credit limit; over 250 lines is 400.
A ``platform_upfront`` purchase that is placed gets one applied transaction of its total (the
card payment at checkout).
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from b2b_pipeline.simulator.clock import format_timestamp, parse_timestamp
from b2b_pipeline.simulator.handlers.common import (
    FULFILMENT_STATUSES,
    MAX_KEY_LENGTH,
    MAX_TEXT_LENGTH,
    PAYMENT_METHODS,
    PLACED_TYPES,
    PROCESSING,
    PURCHASE_TYPES,
)
from b2b_pipeline.simulator.handlers.customers import new_customer_fields
from b2b_pipeline.simulator.handlers.purchases import (
    customer_currency,
    line_item,
    purchase_document,
)
from b2b_pipeline.simulator.limits import check_limit
from b2b_pipeline.simulator.pricing import (
    PricedLine,
    as_decimal,
    buyer_price,
    price_line,
    to_money,
)
from b2b_pipeline.simulator.problems import ApiError, not_found, problem_item
from b2b_pipeline.simulator.routes import Request, Response
from b2b_pipeline.simulator.state import PortalState, new_id, purchase_key
from b2b_pipeline.simulator.validation import (
    FieldErrors,
    is_number,
    iso_datetime,
    one_of,
    require_object,
    text,
)

if TYPE_CHECKING:
    from b2b_pipeline.simulator.app import Portal

PLATFORM_UPFRONT = "platform_upfront"
ON_ACCOUNT = "on_account"


def register_customer(portal: Portal, request: Request) -> Response:
    """A company signing up on the portal by itself: no external_id, no accounting_id."""
    body = require_object(request.body(), "registration")
    errors = FieldErrors()
    fields = new_customer_fields(
        company_name=text(errors, body, "company_name", required=True, max_len=255),
        email=text(errors, body, "email", required=True, max_len=254),
        first_name=text(errors, body, "first_name", max_len=128),
        last_name=text(errors, body, "last_name", max_len=128),
    )
    errors.raise_if_any("registration")
    state = portal.state
    with state.lock:
        # One sign-up per email, as on a real portal: registering again returns the company
        # that exists (200), so demo seeding can be repeated without duplicate companies.
        existing = state.find_customer("email", fields["email"])
        if existing is not None:
            return Response(200, existing)
        check_limit("customers", len(state.customers) + 1, "email")
        customer = state.save_customer({"id": new_id(), **fields})
    return Response(201, customer)


def place_order(portal: Portal, request: Request) -> Response:
    body = require_object(request.body(), "order")
    raw_lines = body.get("lines")
    if isinstance(raw_lines, list):
        check_limit("line_items", len(raw_lines), "lines")
    errors = FieldErrors()
    reference = text(errors, body, "customer", required=True, max_len=MAX_KEY_LENGTH * 2)
    purchase_type = one_of(errors, body, "type", PURCHASE_TYPES, default="order")
    payment_method = one_of(errors, body, "payment_method", PAYMENT_METHODS, default=ON_ACCOUNT)
    customer_reference = text(errors, body, "customer_reference", max_len=MAX_TEXT_LENGTH) or ""
    # Demo data may backdate an order (month-end needs history); updated_at is always "now".
    placed_at = iso_datetime(errors, body, "placed_at")
    if placed_at is not None:
        placed_at = format_timestamp(parse_timestamp(placed_at))
    lines = _order_lines(errors, raw_lines)
    errors.raise_if_any("order")
    assert reference is not None and purchase_type is not None and payment_method is not None
    placed = purchase_type in PLACED_TYPES
    state = portal.state
    with state.lock:
        customer = state.find_customer("sparklayer", reference) or state.find_customer(
            "platform", reference
        )
        if customer is None:
            raise not_found("customer", reference, "customer")
        _check_ordering_allowed(state, customer, payment_method)
        currency = customer_currency(state, customer)
        tax_rate = (
            Decimal(0) if customer["tax_exempt"] else as_decimal(portal.config.standard_tax_rate)
        )
        priced = _price_lines(state, customer, lines, tax_rate)
        gross = sum((line.gross for line in priced), Decimal(0))
        if payment_method == ON_ACCOUNT and placed:
            _check_credit(customer, gross)
        purchase = purchase_document(
            purchase_id=new_id(),
            purchase_type=purchase_type,
            identifiers={"visible": state.next_visible_identifier()},
            customer=customer,
            payment_method=payment_method,
            customer_reference=customer_reference,
            currency=currency,
            created_at=placed_at,
            placed_at=placed_at if placed else None,
            fulfilment_status=PROCESSING if placed else "",
            packages=[
                {
                    "identifiers": {},
                    "line_items": [_line_item(line, currency) for line in priced],
                    "shipments": [],
                }
            ],
        )
        state.save_purchase(purchase, placed=placed)
        if placed:
            _pay_at_checkout(state, purchase)
    return Response(201, purchase)


def change_purchase(portal: Portal, request: Request) -> Response:
    """A buyer or an account manager moves a purchase on: a quote or an unconfirmed order
    confirmed into an order (``type``), an order cancelled (``calculated_fulfilment_status``)."""
    body = require_object(request.body(), "purchase change")
    errors = FieldErrors()
    new_type = one_of(errors, body, "type", PURCHASE_TYPES)
    new_status = one_of(errors, body, "calculated_fulfilment_status", FULFILMENT_STATUSES)
    if new_type is None and new_status is None and not errors.items:
        errors.add("required", "Send type, calculated_fulfilment_status or both.", "type")
    errors.raise_if_any("purchase change")
    state = portal.state
    purchase_id = request.params["id"]
    with state.lock:
        current = state.find_purchase("sparklayer", purchase_id) or state.find_purchase(
            "visible", purchase_id
        )
        if current is None:
            raise not_found("purchase", purchase_id, "id")
        purchase_type = new_type or current["type"]
        placed = purchase_type in PLACED_TYPES
        status = new_status or current["calculated_fulfilment_status"]
        if placed and not status:
            status = PROCESSING
        first_placed = placed and not current["dates"]["placed_at"]
        updated = {
            **current,
            "type": purchase_type,
            "calculated_fulfilment_status": status,
            "dates": dict(current["dates"]),
        }
        state.save_purchase(updated, placed=placed)
        if first_placed:
            _pay_at_checkout(state, updated)
    return Response(200, updated)


def _pay_at_checkout(state: PortalState, purchase: dict[str, Any]) -> None:
    """A card payment taken when the purchase is placed: one transaction applied to it."""
    if purchase["payment_method"] != PLATFORM_UPFRONT:
        return
    state.add_transaction(
        purchase_key(purchase),
        {
            "id": new_id(),
            "total": purchase["calculated_total"],
            "apply_to_balance": True,
            "created_at": purchase["dates"]["placed_at"],
        },
    )


def _order_lines(errors: FieldErrors, raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        errors.add("required", "lines must be a non-empty array.", "lines")
        return []
    lines = []
    for i, line in enumerate(raw):
        prefix = f"lines[{i}]."
        if not isinstance(line, dict):
            errors.add("invalid-type", "A line must be an object.", f"lines[{i}]")
            continue
        sku = text(errors, line, "sku", required=True, max_len=MAX_KEY_LENGTH, prefix=prefix)
        quantity = line.get("quantity")
        if type(quantity) is not int or quantity < 1:
            message = f"{prefix}quantity must be an integer of at least 1."
            errors.add("invalid-value", message, prefix + "quantity")
        unit_price = line.get("unit_price")
        if unit_price is not None and (not is_number(unit_price) or unit_price < 0):
            message = f"{prefix}unit_price must be a number of at least 0."
            errors.add("invalid-value", message, prefix + "unit_price")
        lines.append({"sku": sku, "quantity": quantity, "unit_price": unit_price})
    return lines


def _check_ordering_allowed(
    state: PortalState, customer: dict[str, Any], payment_method: str
) -> None:
    """A customer with no group may order; a group decides ordering and payment methods."""
    group = state.groups.get(customer["group"] or "")
    if group is None:
        return
    if not group["ordering_enabled"]:
        message = (
            f"Ordering is disabled for customer group {group['slug']!r}; "
            "the account cannot place orders."
        )
        raise ApiError(403, message, [problem_item("ordering-disabled", message, "customer")])
    if payment_method not in group["payment_methods"]:
        message = (
            f"Customer group {group['slug']!r} does not allow payment method "
            f"{payment_method!r} (allowed: {', '.join(group['payment_methods']) or 'none'})."
        )
        raise ApiError(
            403, message, [problem_item("payment-method-not-allowed", message, "payment_method")]
        )


def _check_credit(customer: dict[str, Any], gross: Decimal) -> None:
    terms = customer["payment_on_account"]
    if not terms or terms.get("credit_limit") is None:
        return
    balance = as_decimal(terms.get("balance") or 0)
    limit = as_decimal(terms["credit_limit"])
    if balance + gross > limit:
        message = (
            f"Pay on Account refused: balance {balance} plus this order's {gross} exceeds the "
            f"credit limit {limit}."
        )
        raise ApiError(
            403, message, [problem_item("credit-limit-exceeded", message, "payment_method")]
        )


def _price_lines(
    state: PortalState,
    customer: dict[str, Any],
    lines: list[dict[str, Any]],
    tax_rate: Decimal,
) -> list[PricedLine]:
    lists = state.customer_price_lists(customer)
    errors = FieldErrors()
    priced = []
    for i, line in enumerate(lines):
        sku, quantity = line["sku"], line["quantity"]
        if line["unit_price"] is not None:
            unit = to_money(as_decimal(line["unit_price"]))
            priced.append(price_line(sku, quantity, unit, unit, tax_rate))
            continue
        price = buyer_price(lists, sku, quantity, customer["discount_percentage"])
        if price is None:
            errors.add(
                "no-price",
                f"SKU {sku!r} has no price for this customer at quantity {quantity}.",
                f"lines[{i}].sku",
            )
            continue
        priced.append(price_line(sku, quantity, price.list_price, price.unit_price, tax_rate))
    errors.raise_if_any("order")
    return priced


def _line_item(line: PricedLine, currency: str) -> dict[str, Any]:
    return line_item(
        line.sku,
        line.quantity,
        net=line.net,
        tax=line.tax,
        discount=line.discount,
        tax_rate=line.tax_rate,
        currency=currency,
    )
