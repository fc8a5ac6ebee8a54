"""What buyers do on the portal (``/_sim/`` only): register, place orders, change status.

Orders are priced by the portal's own rule (``simulator/pricing.py``) from the customer's lists,
unless the buyer's line gives ``unit_price`` (a way for demos to create price drift).
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from b2b_pipeline.simulator.clock import format_timestamp, parse_timestamp
from b2b_pipeline.simulator.handlers.common import (
    DEFAULT_CURRENCY,
    MAX_BATCH_ITEMS,
    MAX_KEY_LENGTH,
    PAYMENT_METHODS,
    PAYMENT_STATUSES,
    PURCHASE_STATUSES,
    money,
)
from b2b_pipeline.simulator.handlers.customers import new_customer_fields
from b2b_pipeline.simulator.handlers.purchases import (
    UNPLACED_STATUSES,
    purchase_document,
    type_for_status,
)
from b2b_pipeline.simulator.pricing import PricedLine, as_decimal, lowest_break_price, price_line
from b2b_pipeline.simulator.problems import ApiError, not_found, problem_item
from b2b_pipeline.simulator.routes import Request, Response
from b2b_pipeline.simulator.state import PortalState, new_id
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

TAX_TITLE = "VAT"


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
    email = str(fields["email"]).casefold()
    with portal.state.lock:
        # One sign-up per email, as on a real portal: registering again returns the company
        # that exists (200), so demo seeding can be repeated without duplicate companies.
        for existing in portal.state.customers.values():
            if str(existing.get("email") or "").casefold() == email:
                return Response(200, existing)
        customer = portal.state.save_customer({"id": new_id(), **fields})
    return Response(201, customer)


def place_order(portal: Portal, request: Request) -> Response:
    body = require_object(request.body(), "order")
    errors = FieldErrors()
    reference = text(errors, body, "customer", required=True, max_len=MAX_KEY_LENGTH * 2)
    status = one_of(errors, body, "status", PURCHASE_STATUSES, default="processing")
    payment_method = one_of(
        errors, body, "payment_method", PAYMENT_METHODS, default="pay_on_account"
    )
    po_number = text(errors, body, "po_number", max_len=MAX_KEY_LENGTH)
    tax_number = text(errors, body, "tax_number", max_len=MAX_KEY_LENGTH)
    # Demo data may backdate an order (month-end needs history); updated_at is always "now".
    placed_at = iso_datetime(errors, body, "placed_at")
    if placed_at is not None:
        placed_at = format_timestamp(parse_timestamp(placed_at))
    lines = _order_lines(errors, body.get("lines"))
    errors.raise_if_any("order")
    assert reference is not None and status is not None
    state = portal.state
    with state.lock:
        customer = state.find_customer("sparklayer", reference) or state.find_customer(
            "platform", reference
        )
        if customer is None:
            raise not_found("customer", reference, "customer")
        _check_ordering_allowed(state, customer)
        currency = _currency(state, customer)
        tax_rate = (
            Decimal(0) if customer["tax_exempt"] else as_decimal(portal.config.standard_tax_rate)
        )
        priced = _price_lines(state, customer, lines, tax_rate)
        gross = sum((line.gross for line in priced), Decimal(0))
        if payment_method == "pay_on_account":
            _check_credit(customer, gross)
        paid = payment_method == "card"
        purchase = purchase_document(
            purchase_id=new_id(),
            purchase_type=type_for_status(status),
            status=status,
            identifiers={"visible": state.next_visible_identifier()},
            customer_identifiers={
                "sparklayer": customer["id"],
                "platform": customer["external_id"],
            },
            created_at=placed_at,
            placed_at=placed_at,
            currency=currency,
            calculated_total=money(gross, currency),
            total_paid=money(gross if paid else Decimal(0), currency),
            tax_lines=_tax_lines(priced, tax_rate, currency),
            line_items=[_line_item(line, currency) for line in priced],
            payment_method=payment_method,
            payment_status="paid" if paid else "pending",
            po_number=po_number,
            tax_exempt=customer["tax_exempt"],
            tax_number=tax_number,
        )
        state.save_purchase(purchase, placed=status not in UNPLACED_STATUSES)
    return Response(201, purchase)


def change_purchase_status(portal: Portal, request: Request) -> Response:
    """A buyer or an account manager moves a purchase on: a quote confirmed, an order cancelled."""
    body = require_object(request.body(), "status change")
    errors = FieldErrors()
    status = one_of(errors, body, "status", PURCHASE_STATUSES)
    payment_status = one_of(errors, body, "payment_status", PAYMENT_STATUSES)
    errors.raise_if_any("status change")
    state = portal.state
    purchase_id = request.params["id"]
    with state.lock:
        current = state.find_purchase("sparklayer", purchase_id) or state.find_purchase(
            "visible", purchase_id
        )
        if current is None:
            raise not_found("purchase", purchase_id, "id")
        new_status = status or current["status"]
        updated = {
            **current,
            "status": new_status,
            "type": type_for_status(new_status, current["type"]),
            "payment_status": payment_status or current["payment_status"],
            "dates": dict(current["dates"]),
        }
        state.save_purchase(updated, placed=new_status not in UNPLACED_STATUSES)
    return Response(200, updated)


def _order_lines(errors: FieldErrors, raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        errors.add("required", "lines must be a non-empty array.", "lines")
        return []
    if len(raw) > MAX_BATCH_ITEMS:
        errors.add("too-many-items", f"At most {MAX_BATCH_ITEMS} lines per order.", "lines")
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


def _check_ordering_allowed(state: PortalState, customer: dict[str, Any]) -> None:
    group = state.groups.get(customer["group"] or "")
    if group is not None and not group["ordering_enabled"]:
        message = (
            f"Ordering is disabled for customer group {group['slug']!r}; "
            "the account cannot place orders."
        )
        raise ApiError(403, message, [problem_item("ordering-disabled", message, "customer")])


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


def _currency(state: PortalState, customer: dict[str, Any]) -> str:
    for slug in customer["price_lists"]:
        price_list = state.price_lists.get(slug)
        if price_list is not None:
            return price_list["currency_code"]
    return DEFAULT_CURRENCY


def _price_lines(
    state: PortalState,
    customer: dict[str, Any],
    lines: list[dict[str, Any]],
    tax_rate: Decimal,
) -> list[PricedLine]:
    lists = [state.pricing[slug] for slug in customer["price_lists"] if slug in state.pricing]
    errors = FieldErrors()
    priced = []
    for i, line in enumerate(lines):
        sku, quantity = line["sku"], line["quantity"]
        if line["unit_price"] is not None:
            unit = as_decimal(line["unit_price"])
            priced.append(price_line(sku, quantity, unit, 0, tax_rate, apply_discount=False))
            continue
        list_price = lowest_break_price(
            (prices[sku] for prices in lists if sku in prices), quantity
        )
        if list_price is None:
            errors.add(
                "no-price",
                f"SKU {sku!r} has no price for this customer at quantity {quantity}.",
                f"lines[{i}].sku",
            )
            continue
        priced.append(
            price_line(sku, quantity, list_price, customer["discount_percentage"], tax_rate)
        )
    errors.raise_if_any("order")
    return priced


def _tax_lines(priced: list[PricedLine], rate: Decimal, currency: str) -> list[dict[str, Any]]:
    if rate == 0:
        return []
    total = sum((line.tax for line in priced), Decimal(0))
    return [{"title": TAX_TITLE, "amount": money(total, currency), "rate": float(rate)}]


def _line_item(line: PricedLine, currency: str) -> dict[str, Any]:
    tax_lines = (
        [{"title": TAX_TITLE, "amount": money(line.tax, currency), "rate": float(line.tax_rate)}]
        if line.tax_rate
        else []
    )
    return {
        "sku": line.sku,
        "quantity": line.quantity,
        "unit_price": money(line.unit_price, currency),
        "line_total": {
            "total_net": money(line.net, currency),
            "total_tax": money(line.tax, currency),
            "total_gross": money(line.gross, currency),
            "discount_net": money(line.discount, currency),
        },
        "tax_lines": tax_lines,
    }
