"""Purchases: orders, quotes and carts (contract §5), in the v2 document shape.

A purchase is served exactly as contract §5 shows it: no top-level ``id`` and no ``status``;
the id is ``purchase_identifiers.sparklayer`` and ``type`` says what the purchase is. Unset
identifiers are ``""``; ``dates.placed_at`` is null until the purchase is first placed.

The list is newest first by ``(dates.updated_at, sparklayer id)`` unless ``order_by`` says
``updated_at``; it is served from the state's sorted index (see ``state.py``), so the
``dates[last_updated]`` bounds are bisects and a page is a slice walked from the right end.

PUT creates on a miss and otherwise replaces the whole purchase. The server owns what it
calculates: a body with any ``calculated_*`` key is refused (so the client is proven not to send
them); ``calculated_total`` is recomputed as the sum of the lines' ``total_gross`` and the
fulfilment status is kept. ``dates`` are the server's too: ``created_at`` is kept, ``updated_at``
and ``revision_date`` change on every save, ``placed_at`` is set once when first placed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from b2b_pipeline.simulator.clock import format_timestamp, parse_timestamp
from b2b_pipeline.simulator.handlers.common import (
    DEFAULT_CURRENCY,
    MAX_KEY_LENGTH,
    MAX_PURCHASES_LIMIT,
    MAX_TEXT_LENGTH,
    PAYMENT_METHODS,
    PLACED_TYPES,
    PROCESSING,
    PURCHASE_TYPES,
    currency_code,
    money,
    money_field,
)
from b2b_pipeline.simulator.limits import check_limit
from b2b_pipeline.simulator.problems import (
    ApiError,
    already_exists,
    id_mismatch,
    invalid_field,
    not_found,
    problem_item,
)
from b2b_pipeline.simulator.routes import Request, Response
from b2b_pipeline.simulator.state import PURCHASE_LOOKUPS, PortalState, new_id, purchase_key
from b2b_pipeline.simulator.validation import FieldErrors, query_int, require_object

if TYPE_CHECKING:
    from b2b_pipeline.simulator.app import Portal

# What a PUT body must carry (contract §5); each one missing is named in the 400.
REQUIRED_FIELDS = (
    "type",
    "purchase_identifiers",
    "customer_identifiers",
    "dates",
    "packages",
    "accounting_files",
    "custom_fields",
)
CALCULATED_PREFIX = "calculated_"
# The keys of the document the server builds; any other key a PUT sends is kept as sent.
DOCUMENT_KEYS = frozenset(
    {
        "type",
        "purchase_identifiers",
        "customer_identifiers",
        "payment_method",
        "customer_reference",
        "currency_code",
        "dates",
        "revision_date",
        "calculated_total",
        "calculated_fulfilment_status",
        "billing_address",
        "packages",
        "accounting_files",
        "custom_fields",
    }
)
# Keys of the version 1 guesses, refused by name [assumed decision]: kept as "unknown fields"
# they would be served back and hide a client still writing version 1.
VERSION_1_FIELDS = {
    "id": "purchase_identifiers.sparklayer",
    "status": "type (and calculated_fulfilment_status)",
    "po_number": "customer_reference",
    "line_items": "packages[].line_items[]",
    "payment_status": "the purchase's transactions",
    "total_paid": "the purchase's transactions",
}
LINE_TOTAL_KEYS = ("total_net", "total_tax", "total_gross", "discount_net")

# List query parameters [doc names; order_by values assumed].
TYPE_PARAM = "type"
UPDATED_GTE = "dates[last_updated][gte]"
UPDATED_LTE = "dates[last_updated][lte]"
PLACED_GTE = "dates[placed][gte]"
PLACED_LTE = "dates[placed][lte]"
CUSTOMER_PARAM = "customer_identifiers[sparklayer]"
ORDER_BY_PARAM = "order_by"
ORDER_BY_VALUES = {"-updated_at": True, "updated_at": False}  # value -> newest first

REVISION_CONFLICT = "revision-conflict"  # [assumed] problem code of a stale revision_date
ID_CHANGE = "id-change"  # [assumed] problem code of the 403


# -- the document -----------------------------------------------------------------------------
def customer_identifiers(customer: dict[str, Any]) -> dict[str, str]:
    return {"sparklayer": customer["id"], "platform": customer["external_id"] or ""}


def line_item(
    sku: str,
    quantity: int,
    *,
    net: Decimal,
    tax: Decimal,
    discount: Decimal,
    tax_rate: Decimal,
    currency: str,
    name: str | None = None,
    tax_title: str = "VAT",
) -> dict[str, Any]:
    """One line of a package; there is no unit price on the wire (unit net = net ÷ quantity)."""
    tax_lines = (
        [{"title": tax_title, "amount": money(tax, currency), "rate": _rate(tax_rate)}]
        if tax_rate
        else []
    )
    return {
        "identifiers": {"sku": sku},
        "name_parent": name or sku,  # [assumed] the simulator has no catalogue: the SKU
        "quantity": quantity,
        "line_total": {
            "total_net": money(net, currency),
            "total_tax": money(tax, currency),
            "total_gross": money(net + tax, currency),
            "discount_net": money(discount, currency),
        },
        "tax_lines": tax_lines,
    }


def _rate(rate: Decimal) -> int | float:
    """20, not 20.0, when the rate is whole (as the contract's example shows it)."""
    return int(rate) if rate == rate.to_integral_value() else float(rate)


def purchase_document(
    *,
    purchase_id: str,
    purchase_type: str | None,
    identifiers: dict[str, str],
    customer: dict[str, Any],
    payment_method: str,
    customer_reference: str,
    currency: str,
    created_at: str | None,
    placed_at: str | None,
    fulfilment_status: str,
    packages: list[dict[str, Any]],
    billing_address: dict[str, Any] | None = None,
    accounting_files: list[Any] | None = None,
    custom_fields: list[Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A purchase in wire order (contract §5); ``updated_at`` and ``revision_date`` are set by
    :meth:`PortalState.save_purchase`."""
    document = {
        "type": purchase_type,
        "purchase_identifiers": {
            "sparklayer": purchase_id,
            "platform": identifiers.get("platform") or "",
            "internal": identifiers.get("internal") or "",
            "visible": identifiers.get("visible") or "",
        },
        "customer_identifiers": customer_identifiers(customer),
        "payment_method": payment_method,
        "customer_reference": customer_reference,
        "currency_code": currency,
        "dates": {"created_at": created_at, "updated_at": None, "placed_at": placed_at},
        "revision_date": None,
        "calculated_total": money(gross_of(packages), currency),
        "calculated_fulfilment_status": fulfilment_status,
        "billing_address": billing_address or {},
        "packages": packages,
        "accounting_files": accounting_files or [],
        "custom_fields": custom_fields or [],
    }
    if extra:
        document.update(extra)
    return document


def gross_of(packages: list[dict[str, Any]]) -> Decimal:
    """The sum of every line's ``total_gross`` (a line with an empty ``line_total`` adds 0)."""
    total = Decimal(0)
    for package in packages:
        for item in package["line_items"]:
            gross = (item.get("line_total") or {}).get("total_gross")
            if isinstance(gross, dict):
                total += Decimal(gross["number"])
    return total


# -- reads --------------------------------------------------------------------------------------
def list_purchases(portal: Portal, request: Request) -> Response:
    query = request.query
    limit = query_int(
        query, "limit", default=MAX_PURCHASES_LIMIT, minimum=1, maximum=MAX_PURCHASES_LIMIT
    )
    offset = query_int(query, "offset", default=0, minimum=0)
    order_by = query.get(ORDER_BY_PARAM) or "-updated_at"
    if order_by not in ORDER_BY_VALUES:
        raise invalid_field(
            ORDER_BY_PARAM, f"{ORDER_BY_PARAM} must be one of {', '.join(ORDER_BY_VALUES)}."
        )
    purchase_type = query.get(TYPE_PARAM) or None
    if purchase_type is not None and purchase_type not in PURCHASE_TYPES:
        raise invalid_field(TYPE_PARAM, f"type must be one of {', '.join(PURCHASE_TYPES)}.")
    placed_from = _timestamp_param(query, PLACED_GTE)
    placed_to = _timestamp_param(query, PLACED_LTE)
    keep = None
    if purchase_type is not None or placed_from is not None or placed_to is not None:

        def keep(purchase: dict[str, Any]) -> bool:
            if purchase_type is not None and purchase["type"] != purchase_type:
                return False
            if placed_from is None and placed_to is None:
                return True
            placed = purchase["dates"]["placed_at"]
            return bool(placed) and (placed_from or "") <= placed <= (placed_to or "\uffff")

    updated_from = _timestamp_param(query, UPDATED_GTE)
    updated_to = _timestamp_param(query, UPDATED_LTE)
    with portal.state.lock:
        page = portal.state.purchases_page(
            updated_from=updated_from,
            updated_to=updated_to,
            customer_id=query.get(CUSTOMER_PARAM) or None,
            keep=keep,
            newest_first=ORDER_BY_VALUES[order_by],
            offset=offset,
            limit=limit,
        )
    return Response(200, page)


def _timestamp_param(query: dict[str, str], name: str) -> str | None:
    """A date-time filter in the stored stamp form (fixed width: compares as text)."""
    raw = query.get(name)
    if not raw:
        return None
    try:
        return format_timestamp(parse_timestamp(raw))
    except ValueError:
        raise invalid_field(name, f"{name} must be an ISO-8601 date-time; got {raw!r}.") from None


def get_purchase(portal: Portal, request: Request) -> Response:
    return Response(200, _find(portal, request))


def list_transactions(portal: Portal, request: Request) -> Response:
    """The purchase's payments: ``[{id, total: money, apply_to_balance, created_at}]`` [assumed]."""
    with portal.state.lock:
        purchase = _find(portal, request)
        transactions = list(portal.state.transactions.get(purchase_key(purchase), []))
    return Response(200, transactions)


def delete_purchase(portal: Portal, request: Request) -> Response:
    state = portal.state
    with state.lock:
        purchase = _find(portal, request)
    with portal.locks.hold(("purchase", purchase_key(purchase))), state.lock:
        if purchase_key(purchase) in state.purchases:
            state.delete_purchase(purchase_key(purchase))
    return Response(204)


def _find(portal: Portal, request: Request) -> dict[str, Any]:
    lookup_by, identifier = _lookup(request)
    with portal.state.lock:
        purchase = portal.state.find_purchase(lookup_by, identifier)
    if purchase is None:
        raise not_found("purchase", identifier)
    return purchase


# -- PUT ----------------------------------------------------------------------------------------
@dataclass
class _PurchaseBody:
    """A PUT body that passed the shape checks; identifiers are ``""`` when unset."""

    purchase_type: str | None  # None when the body gives no type (the document says null)
    identifiers: dict[str, str]
    customer: dict[str, str]
    payment_method: str
    customer_reference: str
    currency: str | None
    created_at: str | None
    placed_at: str | None
    revision_date: str | None
    billing_address: dict[str, Any]
    packages: list[dict[str, Any]]
    accounting_files: list[Any]
    custom_fields: list[Any]
    extra: dict[str, Any]


def put_purchase(portal: Portal, request: Request) -> Response:
    """Create (nothing matches the lookup: 201) or replace (200) a whole purchase."""
    lookup_by, identifier = _lookup(request)
    body = _parse_purchase(require_object(request.body(), "purchase"))
    sent = body.identifiers.get(lookup_by)
    if sent and sent != identifier:
        raise id_mismatch(f"purchase_identifiers.{lookup_by}", identifier)
    state = portal.state
    with state.lock:
        existing = state.find_purchase(lookup_by, identifier)
    resource = purchase_key(existing) if existing else f"{lookup_by}:{identifier}"
    with portal.locks.hold(("purchase", resource)), state.lock:
        existing = state.find_purchase(lookup_by, identifier)
        if existing is not None:
            purchase_id = _check_replace(existing, body)
        else:
            purchase_id = _new_purchase_id(state, lookup_by, identifier, body)
        identifiers = {**body.identifiers, lookup_by: identifier}
        if not identifiers.get("visible"):
            identifiers["visible"] = (
                existing["purchase_identifiers"]["visible"]
                if existing
                else state.next_visible_identifier()
            )
        _check_unique_identifiers(state, identifiers, purchase_id)
        customer = _customer_of(state, body.customer)
        purchase = _replacement(body, existing, purchase_id, identifiers, customer, state)
        state.save_purchase(purchase, placed=body.purchase_type in PLACED_TYPES)
    return Response(200 if existing else 201, purchase)


def _check_replace(existing: dict[str, Any], body: _PurchaseBody) -> str:
    purchase_id = purchase_key(existing)
    sent_id = body.identifiers.get("sparklayer")
    if sent_id and sent_id != purchase_id:
        message = (
            f"The SparkLayer id of purchase {purchase_id!r} cannot change "
            f"(the body says {sent_id!r})."
        )
        raise ApiError(
            403, message, [problem_item(ID_CHANGE, message, "purchase_identifiers.sparklayer")]
        )
    if body.revision_date is not None and body.revision_date != existing["revision_date"]:
        message = (
            "The purchase was changed since it was read (revision_date "
            f"{body.revision_date!r}, now {existing['revision_date']!r}); read it again."
        )
        raise ApiError(409, message, [problem_item(REVISION_CONFLICT, message, "revision_date")])
    return purchase_id


def _new_purchase_id(
    state: PortalState, lookup_by: str, identifier: str, body: _PurchaseBody
) -> str:
    chosen = identifier if lookup_by == "sparklayer" else body.identifiers.get("sparklayer")
    if not chosen:
        return new_id()
    try:
        uuid.UUID(chosen)
    except ValueError:
        raise invalid_field(
            "purchase_identifiers.sparklayer", "A SparkLayer purchase id is a UUID."
        ) from None
    if chosen in state.purchases:
        message = f"SparkLayer id {chosen!r} belongs to another purchase."
        raise ApiError(
            403, message, [problem_item(ID_CHANGE, message, "purchase_identifiers.sparklayer")]
        )
    return chosen


def _replacement(
    body: _PurchaseBody,
    existing: dict[str, Any] | None,
    purchase_id: str,
    identifiers: dict[str, str],
    customer: dict[str, Any],
    state: PortalState,
) -> dict[str, Any]:
    dates = existing["dates"] if existing else {"created_at": body.created_at, "placed_at": None}
    fulfilment = existing["calculated_fulfilment_status"] if existing else ""
    if not fulfilment and body.purchase_type in PLACED_TYPES:
        fulfilment = PROCESSING
    currency = body.currency or (
        existing["currency_code"] if existing else customer_currency(state, customer)
    )
    return purchase_document(
        purchase_id=purchase_id,
        purchase_type=body.purchase_type,
        identifiers=identifiers,
        customer=customer,
        payment_method=body.payment_method,
        customer_reference=body.customer_reference,
        currency=currency,
        created_at=dates["created_at"],
        placed_at=dates["placed_at"] or body.placed_at,
        fulfilment_status=fulfilment,
        packages=body.packages,
        billing_address=body.billing_address,
        accounting_files=body.accounting_files,
        custom_fields=body.custom_fields,
        extra=body.extra,
    )


def customer_currency(state: PortalState, customer: dict[str, Any]) -> str:
    """The currency of the customer's first price list (what the portal would sell in)."""
    for slug in customer["price_lists"]:
        price_list = state.price_lists.get(slug)
        if price_list is not None:
            return price_list["currency_code"]
    return DEFAULT_CURRENCY


def _customer_of(state: PortalState, identifiers: dict[str, str]) -> dict[str, Any]:
    """The purchase's customer, by SparkLayer id, else by platform id (``external_id``)."""
    kind = "sparklayer" if identifiers.get("sparklayer") else "platform"
    if not identifiers.get(kind):
        raise invalid_field(
            "customer_identifiers.sparklayer", "The purchase must name its customer.", "required"
        )
    customer = state.find_customer(kind, identifiers[kind])
    if customer is None:
        message = f"No customer with {kind} id {identifiers[kind]!r}."
        raise invalid_field(f"customer_identifiers.{kind}", message, "not-found")
    return customer


def _check_unique_identifiers(
    state: PortalState, identifiers: dict[str, str], purchase_id: str
) -> None:
    for kind in ("platform", "internal", "visible"):
        value = identifiers.get(kind)
        owner = state.purchase_by_identifier[kind].get(value) if value else None
        if owner is not None and owner != purchase_id:
            raise already_exists("purchase", value or "", f"purchase_identifiers.{kind}")


def _parse_purchase(body: dict[str, Any]) -> _PurchaseBody:
    """Every shape problem of a PUT body in one 400; nothing is stored before it passes."""
    errors = FieldErrors()
    for key in REQUIRED_FIELDS:
        if body.get(key) is None:
            errors.add("required", f"{key} is required.", key)
    for key in body:
        if key.startswith(CALCULATED_PREFIX):
            errors.add(
                "read-only",
                f"{key} is calculated by SparkLayer and must not be sent.",
                key,
            )
    for key, replacement in VERSION_1_FIELDS.items():
        if key in body:
            errors.add("unknown-field", f"{key} is not a purchase field; use {replacement}.", key)
    purchase_type = body.get("type")
    if purchase_type is not None and purchase_type not in PURCHASE_TYPES:
        errors.add("invalid-value", f"type must be one of {', '.join(PURCHASE_TYPES)}.", "type")
    identifiers = _identifiers(
        errors, body.get("purchase_identifiers"), "purchase_identifiers", PURCHASE_LOOKUPS
    )
    customer = _identifiers(
        errors, body.get("customer_identifiers"), "customer_identifiers", ("sparklayer", "platform")
    )
    dates = _object(errors, body, "dates")
    method = body.get("payment_method") or ""
    if method and method not in PAYMENT_METHODS:
        errors.add(
            "invalid-value",
            f"payment_method must be one of {', '.join(PAYMENT_METHODS)} or empty.",
            "payment_method",
        )
    reference = body.get("customer_reference") or ""
    if type(reference) is not str or len(reference) > MAX_TEXT_LENGTH:
        errors.add(
            "invalid-value", "customer_reference must be a short text.", "customer_reference"
        )
    currency = currency_code(errors, body, "currency_code") if body.get("currency_code") else None
    packages = _packages(errors, body.get("packages"))
    accounting_files = _array(errors, body, "accounting_files")
    custom_fields = _array(errors, body, "custom_fields")
    revision = body.get("revision_date")
    if revision is not None and type(revision) is not str:
        errors.add("invalid-type", "revision_date must be a date-time string.", "revision_date")
    created_at = _stamp(errors, dates, "created_at")
    placed_at = _stamp(errors, dates, "placed_at")
    billing_address = _object(errors, body, "billing_address")
    errors.raise_if_any("purchase")
    line_count = sum(len(package["line_items"]) for package in packages)
    check_limit("line_items", line_count, "packages")
    return _PurchaseBody(
        purchase_type=purchase_type,
        identifiers=identifiers,
        customer=customer,
        payment_method=method,
        customer_reference=reference,
        currency=currency,
        created_at=created_at,
        placed_at=placed_at,
        revision_date=revision,
        billing_address=billing_address,
        packages=packages,
        accounting_files=accounting_files,
        custom_fields=custom_fields,
        extra={key: value for key, value in body.items() if key not in DOCUMENT_KEYS},
    )


def _identifiers(
    errors: FieldErrors, raw: Any, prop: str, kinds: tuple[str, ...]
) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        errors.add("invalid-type", f"{prop} must be an object.", prop)
        return {}
    clean = {}
    for kind in kinds:
        value = raw.get(kind)
        if value is None or value == "":
            continue
        if type(value) is not str or len(value) > MAX_KEY_LENGTH:
            message = f"{prop}.{kind} must be a text of at most {MAX_KEY_LENGTH} characters."
            errors.add("invalid-value", message, f"{prop}.{kind}")
            continue
        clean[kind] = value
    return clean


def _object(errors: FieldErrors, body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors.add("invalid-type", f"{key} must be an object.", key)
        return {}
    return value


def _array(errors: FieldErrors, body: dict[str, Any], key: str) -> list[Any]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        errors.add("invalid-type", f"{key} must be an array.", key)
        return []
    return value


def _stamp(errors: FieldErrors, dates: dict[str, Any], key: str) -> str | None:
    value = dates.get(key)
    if value is None or value == "":
        return None
    if type(value) is str:
        try:
            return format_timestamp(parse_timestamp(value))
        except ValueError:
            pass
    errors.add("invalid-value", f"dates.{key} must be an ISO-8601 date-time.", f"dates.{key}")
    return None


def _packages(errors: FieldErrors, raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        errors.add("invalid-type", "packages must be an array.", "packages")
        return []
    packages = []
    for p, package in enumerate(raw):
        where = f"packages[{p}]"
        if not isinstance(package, dict):
            errors.add("invalid-type", f"{where} must be an object.", where)
            continue
        items = package.get("line_items")
        if not isinstance(items, list):
            errors.add(
                "invalid-type", f"{where}.line_items must be an array.", f"{where}.line_items"
            )
            continue
        for i, item in enumerate(items):
            _check_line_item(errors, item, f"{where}.line_items[{i}]")
        packages.append({"identifiers": {}, "shipments": [], **package})
    return packages


def _check_line_item(errors: FieldErrors, item: Any, where: str) -> None:
    if not isinstance(item, dict):
        errors.add("invalid-type", f"{where} must be an object.", where)
        return
    identifiers = item.get("identifiers")
    sku = identifiers.get("sku") if isinstance(identifiers, dict) else None
    if type(sku) is not str or not sku.strip() or len(sku) > MAX_KEY_LENGTH:
        errors.add(
            "required", f"{where}.identifiers.sku must be a SKU.", f"{where}.identifiers.sku"
        )
    quantity = item.get("quantity")
    if type(quantity) is not int or quantity < 1:
        errors.add(
            "invalid-value",
            f"{where}.quantity must be a whole number of at least 1.",
            f"{where}.quantity",
        )
    line_total = item.get("line_total")
    if line_total is None:
        return
    if not isinstance(line_total, dict):
        errors.add("invalid-type", f"{where}.line_total must be an object.", f"{where}.line_total")
        return
    for key in LINE_TOTAL_KEYS:
        money_field(errors, line_total, key, prefix=f"{where}.line_total.")


def _lookup(request: Request) -> tuple[str, str]:
    lookup_by = request.params["lookupBy"]
    if lookup_by not in PURCHASE_LOOKUPS:
        raise invalid_field("lookupBy", f"lookupBy must be one of {', '.join(PURCHASE_LOOKUPS)}.")
    return lookup_by, request.params["identifier"]
