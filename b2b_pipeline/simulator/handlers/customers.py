"""Customers (``/api/v2/customers``) and customer groups (``/api/v1/customer-groups``), §2.

A customer PUT **replaces**: every field left out of the body is cleared (``accounting_id``,
``price_lists``, ``payment_on_account``, ``group``...), as SparkLayer documents, so a client
that sends a partial body loses data here exactly as it would on the real portal. The body must
carry the URL's identifier (else 400 ``idMismatch``); an unknown group, role, price list or
parent is 400; an ``external_id`` or email owned by another customer is 409.

Groups carry ``payment_methods`` and ``ordering_enabled`` [assumed names]: a hold is a move to a
group with ordering off, and ``/_sim/orders`` refuses such a customer's orders (403).
"""

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
from b2b_pipeline.simulator.limits import check_limit
from b2b_pipeline.simulator.problems import (
    already_exists,
    id_mismatch,
    invalid_field,
    not_found,
)
from b2b_pipeline.simulator.routes import Request, Response
from b2b_pipeline.simulator.state import PortalState, email_key, new_id
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

CUSTOMER_LOOKUPS = ("sparklayer", "platform", "email")
# The body field that must carry the URL's identifier, per lookup.
_LOOKUP_FIELD = {"sparklayer": "id", "platform": "external_id", "email": "email"}
CUSTOMER_ROLES = ("admin", "approver", "buyer")  # [assumed] no list of roles is published
RESERVED_EXTERNAL_ID_PREFIX = "cu_"  # SparkLayer's own customer ids start so [doc]


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
    return Response(200, _find(portal, request))


def delete_customer(portal: Portal, request: Request) -> Response:
    state = portal.state
    customer = _find(portal, request)
    with portal.locks.hold(("customer", customer["id"])), state.lock:
        if customer["id"] in state.customers:
            state.delete_customer(customer["id"])
    return Response(204)


def _find(portal: Portal, request: Request) -> dict[str, Any]:
    lookup_by, identifier = _lookup(request)
    with portal.state.lock:
        customer = portal.state.find_customer(lookup_by, identifier)
    if customer is None:
        raise not_found("customer", identifier)
    return customer


def put_customer(portal: Portal, request: Request) -> Response:
    """Create (201; not by ``sparklayer``, whose ids the portal hands out) or replace (200)."""
    lookup_by, identifier = _lookup(request)
    body = require_object(request.body(), "customer")
    field = _LOOKUP_FIELD[lookup_by]
    sent = body.get(field)
    same = (
        isinstance(sent, str) and email_key(sent) == email_key(identifier)
        if lookup_by == "email"
        else sent == identifier
    )
    if not same:
        raise id_mismatch(field, identifier)
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
            if existing is None:
                check_limit("customers", len(state.customers) + 1, field)
            customer_id = existing["id"] if existing else new_id()
            _check_references(state, fields, customer_id)
            customer = state.save_customer({"id": customer_id, **fields})
    return Response(200 if existing else 201, customer)


def new_customer_fields(**values: Any) -> dict[str, Any]:
    """A customer's fields in wire order; what is not given is cleared (a PUT replaces)."""
    fields: dict[str, Any] = {
        "external_id": None,
        "email": None,
        "first_name": None,
        "last_name": None,
        "company_name": None,
        "accounting_id": None,
        "group": None,
        "role": None,
        "price_lists": [],
        "discount_percentage": 0,
        "tax_exempt": False,
        "parent_customer_id": None,
        "addresses": [],
        "payment_on_account": None,
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
        role=text(errors, body, "role", max_len=MAX_SLUG_LENGTH),
        discount_percentage=number(
            errors, body, "discount_percentage", default=0, minimum=0, maximum=100
        ),
        tax_exempt=boolean(errors, body, "tax_exempt", default=False),
        parent_customer_id=text(errors, body, "parent_customer_id", max_len=MAX_KEY_LENGTH),
    )
    external_id = fields["external_id"]
    if external_id is not None and external_id.startswith(RESERVED_EXTERNAL_ID_PREFIX):
        message = f"external_id must not start with {RESERVED_EXTERNAL_ID_PREFIX!r}."
        errors.add("invalid-value", message, "external_id")
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
    check_limit("addresses", len(fields["addresses"]), "addresses")
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
        "balance": number(errors, raw, "balance", default=0, prefix=prefix),
        "balance_date": iso_date(errors, raw, "balance_date", prefix=prefix),
        "currency_code": currency_code(errors, raw, "currency_code", prefix=prefix),
        "net_terms": integer(errors, raw, "net_terms", minimum=0, prefix=prefix),  # [assumed]
    }


def _check_references(state: PortalState, fields: dict[str, Any], customer_id: str) -> None:
    """Group, role, lists and parent must exist; external_id and email belong to one customer."""
    errors = FieldErrors()
    if fields["group"] is not None and fields["group"] not in state.groups:
        errors.add("not-found", f"No customer group {fields['group']!r}.", "group")
    if fields["role"] is not None and fields["role"] not in CUSTOMER_ROLES:
        errors.add("not-found", f"No customer role {fields['role']!r}.", "role")
    for i, slug in enumerate(fields["price_lists"]):
        if slug not in state.price_lists:
            errors.add("not-found", f"No price list {slug!r}.", f"price_lists[{i}]")
    parent = fields["parent_customer_id"]
    if parent is not None and (parent == customer_id or parent not in state.customers):
        errors.add("not-found", f"No other customer {parent!r}.", "parent_customer_id")
    errors.raise_if_any("customer")
    owner = state.customer_by_external_id.get(fields["external_id"] or "")
    if owner is not None and owner != customer_id:
        raise already_exists("customer", fields["external_id"], "external_id")
    owner = state.customer_by_email.get(email_key(fields["email"]) or "")
    if owner is not None and owner != customer_id:
        raise already_exists("customer", fields["email"], "email")


def _lookup(request: Request) -> tuple[str, str]:
    lookup_by = request.params["lookupBy"]
    if lookup_by not in CUSTOMER_LOOKUPS:
        raise invalid_field("lookupBy", f"lookupBy must be one of {', '.join(CUSTOMER_LOOKUPS)}.")
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
    parent_slug = text(errors, body, "parent_slug", max_len=MAX_SLUG_LENGTH)
    group = {
        "slug": slug,
        "name": text(errors, body, "name", required=True, max_len=MAX_NAME_LENGTH),
        "parent_slug": parent_slug,
        "payment_methods": _payment_methods(errors, body, list(PAYMENT_METHODS)),
        "ordering_enabled": boolean(errors, body, "ordering_enabled", default=True),
    }
    errors.raise_if_any("customer group")
    assert slug is not None
    state = portal.state
    with portal.locks.hold(("customer-group", slug)), state.lock:
        if slug in state.groups:
            raise already_exists("customer group", slug, "slug", status=400)
        _check_parent(state, slug, parent_slug)
        check_limit("customer_groups", len(state.groups) + 1, "slug")
        state.groups[slug] = group
        state.changed()
    return Response(201, group)


def patch_customer_group(portal: Portal, request: Request) -> Response:
    """Change the fields sent (name, parent, payment methods, ordering); the slug stays."""
    slug = request.params["slug"]
    body = require_object(request.body(), "customer group")
    state = portal.state
    with portal.locks.hold(("customer-group", slug)), state.lock:
        current = state.groups.get(slug)
        if current is None:
            raise not_found("customer group", slug, "slug")
        errors = FieldErrors()
        group = dict(current)
        if "name" in body:
            group["name"] = text(errors, body, "name", required=True, max_len=MAX_NAME_LENGTH)
        if "parent_slug" in body:
            group["parent_slug"] = text(errors, body, "parent_slug", max_len=MAX_SLUG_LENGTH)
        if "payment_methods" in body:
            group["payment_methods"] = _payment_methods(errors, body, current["payment_methods"])
        if "ordering_enabled" in body:
            group["ordering_enabled"] = boolean(
                errors, body, "ordering_enabled", default=current["ordering_enabled"]
            )
        errors.raise_if_any("customer group")
        _check_parent(state, slug, group["parent_slug"])
        state.groups[slug] = group
        state.changed()
    return Response(200, group)


def _payment_methods(errors: FieldErrors, body: dict[str, Any], default: list[str]) -> list[str]:
    methods = body.get("payment_methods")
    if methods is None:
        return list(default)
    if not (isinstance(methods, list) and set(methods) <= set(PAYMENT_METHODS)):
        errors.add(
            "invalid-value",
            f"payment_methods must be an array of {', '.join(PAYMENT_METHODS)}.",
            "payment_methods",
        )
        return list(default)
    return list(dict.fromkeys(methods))


def _check_parent(state: PortalState, slug: str, parent_slug: str | None) -> None:
    if parent_slug is not None and (parent_slug == slug or parent_slug not in state.groups):
        raise invalid_field("parent_slug", f"No other customer group {parent_slug!r}.", "not-found")
