"""Customers (``/api/v2/customers``) and customer groups (``/api/v1/customer-groups``), §2."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from b2b_pipeline.simulator.handlers.common import (
    MAX_KEY_LENGTH,
    MAX_NAME_LENGTH,
    MAX_SLUG_LENGTH,
    MAX_V2_PAGE_SIZE,
    PAYMENT_METHODS,
    currency_code,
    pagination,
)
from b2b_pipeline.simulator.problems import already_exists, id_mismatch, invalid_field, not_found
from b2b_pipeline.simulator.routes import Request, Response
from b2b_pipeline.simulator.state import PortalState, new_id
from b2b_pipeline.simulator.validation import (
    FieldErrors,
    boolean,
    integer,
    iso_date,
    number,
    query_int,
    require_object,
    text,
)

if TYPE_CHECKING:
    from b2b_pipeline.simulator.app import Portal

CUSTOMER_LOOKUPS = ("sparklayer", "platform")


def list_customers(portal: Portal, request: Request) -> Response:
    page = query_int(request.query, "page", default=1, minimum=1)
    size = query_int(request.query, "page_size", default=50, minimum=1, maximum=MAX_V2_PAGE_SIZE)
    state = portal.state
    with state.lock:
        ids = state.customer_order[(page - 1) * size : page * size]
        data = [state.customers[customer_id] for customer_id in ids]
        total = len(state.customer_order)
    return Response(200, {"data": data, "pagination": pagination(page, size, total)})


def get_customer(portal: Portal, request: Request) -> Response:
    lookup_by, identifier = _lookup(request)
    with portal.state.lock:
        customer = portal.state.find_customer(lookup_by, identifier)
    if customer is None:
        raise not_found("customer", identifier)
    return Response(200, customer)


def put_customer(portal: Portal, request: Request) -> Response:
    """Create or fully replace a customer; ``platform`` lookups create, ``sparklayer`` ones 404."""
    lookup_by, identifier = _lookup(request)
    body = require_object(request.body(), "customer")
    if lookup_by == "platform" and body.get("external_id") != identifier:
        raise id_mismatch("external_id", identifier)
    if lookup_by == "sparklayer" and body.get("id") not in (None, identifier):
        raise id_mismatch("id", identifier)
    state = portal.state
    with state.lock:
        existing = state.find_customer(lookup_by, identifier)
    resource = existing["id"] if existing else f"{lookup_by}:{identifier}"
    with portal.locks.hold(("customer", resource)):
        fields = parse_customer(body)
        with state.lock:
            existing = state.find_customer(lookup_by, identifier)
            if existing is None and lookup_by == "sparklayer":
                raise not_found("customer", identifier)
            customer_id = existing["id"] if existing else new_id()
            _check_references(state, fields, customer_id)
            customer = state.save_customer({"id": customer_id, **fields})
    return Response(200 if existing else 201, customer)


def new_customer_fields(**values: Any) -> dict[str, Any]:
    """A customer's fields in wire order, defaults for what is not given."""
    fields: dict[str, Any] = {
        "external_id": None,
        "email": None,
        "first_name": None,
        "last_name": None,
        "company_name": None,
        "accounting_id": None,
        "group": None,
        "price_lists": [],
        "discount_percentage": 0,
        "tax_exempt": False,
        "payment_on_account": None,
        "addresses": [],
    }
    fields.update(values)
    return fields


def parse_customer(body: dict[str, Any]) -> dict[str, Any]:
    """The customer fields of a full-replace body; a 400 naming every bad field."""
    errors = FieldErrors()
    fields = new_customer_fields(
        external_id=text(errors, body, "external_id", max_len=MAX_KEY_LENGTH),
        email=text(errors, body, "email", max_len=254),
        first_name=text(errors, body, "first_name", max_len=128),
        last_name=text(errors, body, "last_name", max_len=128),
        company_name=text(errors, body, "company_name", max_len=255),
        accounting_id=text(errors, body, "accounting_id", max_len=MAX_KEY_LENGTH),
        group=text(errors, body, "group", max_len=MAX_SLUG_LENGTH),
        discount_percentage=number(
            errors, body, "discount_percentage", default=0, minimum=0, maximum=100
        ),
        tax_exempt=boolean(errors, body, "tax_exempt", default=False),
    )
    price_lists = body.get("price_lists") or []
    if not (isinstance(price_lists, list) and all(isinstance(s, str) for s in price_lists)):
        errors.add("invalid-type", "price_lists must be an array of slugs.", "price_lists")
    elif len(set(price_lists)) != len(price_lists):
        errors.add("duplicate", "price_lists names a list twice.", "price_lists")
    else:
        fields["price_lists"] = list(price_lists)
    addresses = body.get("addresses") or []
    if not (isinstance(addresses, list) and all(isinstance(a, dict) for a in addresses)):
        errors.add("invalid-type", "addresses must be an array of objects.", "addresses")
    else:
        fields["addresses"] = addresses
    fields["payment_on_account"] = _payment_on_account(errors, body.get("payment_on_account"))
    errors.raise_if_any("customer")
    return fields


def _payment_on_account(errors: FieldErrors, raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        errors.add(
            "invalid-type", "payment_on_account must be an object or null.", "payment_on_account"
        )
        return None
    prefix = "payment_on_account."
    return {
        "credit_limit": number(errors, raw, "credit_limit", minimum=0, prefix=prefix),
        "currency": currency_code(errors, raw, "currency", prefix=prefix),
        "net_terms": integer(errors, raw, "net_terms", minimum=0, prefix=prefix),
        "balance": number(errors, raw, "balance", default=0, prefix=prefix),
        "balance_date": iso_date(errors, raw, "balance_date", prefix=prefix),
    }


def _check_references(state: PortalState, fields: dict[str, Any], customer_id: str) -> None:
    """Group and lists must exist; an external_id belongs to one customer only."""
    errors = FieldErrors()
    if fields["group"] is not None and fields["group"] not in state.groups:
        errors.add("not-found", f"No customer group {fields['group']!r}.", "group")
    for i, slug in enumerate(fields["price_lists"]):
        if slug not in state.price_lists:
            errors.add("not-found", f"No price list {slug!r}.", f"price_lists[{i}]")
    errors.raise_if_any("customer")
    owner = state.customer_by_external_id.get(fields["external_id"] or "")
    if owner is not None and owner != customer_id:
        raise already_exists("customer", fields["external_id"], "external_id")


def _lookup(request: Request) -> tuple[str, str]:
    lookup_by = request.params["lookupBy"]
    if lookup_by not in CUSTOMER_LOOKUPS:
        raise invalid_field("lookupBy", "lookupBy must be sparklayer or platform.")
    return lookup_by, request.params["identifier"]


# -- customer groups ---------------------------------------------------------------------------
def list_customer_groups(portal: Portal, request: Request) -> Response:
    with portal.state.lock:
        groups = list(portal.state.groups.values())
    return Response(200, groups)


def create_customer_group(portal: Portal, request: Request) -> Response:
    body = require_object(request.body(), "customer group")
    errors = FieldErrors()
    slug = text(errors, body, "slug", required=True, max_len=MAX_SLUG_LENGTH)
    name = text(errors, body, "name", required=True, max_len=MAX_NAME_LENGTH)
    parent_slug = text(errors, body, "parent_slug", max_len=MAX_SLUG_LENGTH)
    methods = body.get("payment_methods")
    if methods is None:
        methods = list(PAYMENT_METHODS)
    elif not (isinstance(methods, list) and set(methods) <= set(PAYMENT_METHODS)):
        errors.add(
            "invalid-value",
            f"payment_methods must be an array of {', '.join(PAYMENT_METHODS)}.",
            "payment_methods",
        )
    ordering_enabled = boolean(errors, body, "ordering_enabled", default=True)
    errors.raise_if_any("customer group")
    assert slug is not None
    state = portal.state
    with portal.locks.hold(("customer-group", slug)), state.lock:
        if slug in state.groups:
            raise already_exists("customer group", slug, "slug")
        if parent_slug is not None and parent_slug not in state.groups:
            raise invalid_field("parent_slug", f"No customer group {parent_slug!r}.", "not-found")
        group = {
            "slug": slug,
            "name": name,
            "parent_slug": parent_slug,
            "payment_methods": list(methods),
            "ordering_enabled": ordering_enabled,
        }
        state.groups[slug] = group
        state.changed()
    return Response(201, group)
