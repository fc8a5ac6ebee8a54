"""Price lists, their quantity-break prices and the price a customer pays (contract §3).

Writes are atomic: every row of a batch is checked before any is applied, so a 400 (which names
each bad row by ``line``, ``field`` and ``message``) leaves the portal unchanged. A SKU sent with
one blank break ``[{"quantity": null, "price": null}]`` loses all its prices in that list; an
empty ``pricing`` array is refused [assumed], so a client is proven to send the documented
removal. Writes answer 204. ``GET .../pricing`` is not paged: the whole list, SKUs sorted, or
204 with no body when the list has no prices.

``fetch-customer-pricing`` answers with the price the portal's own rule (``simulator/pricing.py``)
gives the customer: 200 when every line is priced, 207 when some are not (those lines carry
``error`` and no prices), 400 for an unknown customer or one with no lists.

Row checks are written out inline rather than through the generic field checkers because a
million-row push goes through them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from b2b_pipeline.simulator.handlers.common import (
    MAX_BATCH_ITEMS,
    MAX_KEY_LENGTH,
    MAX_NAME_LENGTH,
    MAX_SLUG_LENGTH,
    MAX_V2_PAGE_SIZE,
    currency_code,
    money,
    pagination,
)
from b2b_pipeline.simulator.handlers.customers import CUSTOMER_LOOKUPS
from b2b_pipeline.simulator.limits import check_limit
from b2b_pipeline.simulator.pricing import buyer_price, to_money
from b2b_pipeline.simulator.problems import already_exists, invalid_field, not_found
from b2b_pipeline.simulator.routes import Request, Response
from b2b_pipeline.simulator.state import PortalState
from b2b_pipeline.simulator.validation import (
    FieldErrors,
    boolean,
    is_number,
    one_of,
    query_int,
    require_array,
    require_object,
    text,
)

if TYPE_CHECKING:
    from b2b_pipeline.simulator.app import Portal

_NUMBER_TYPES = (int, float)  # bool is excluded by the exact type test
_INFINITY = float("inf")

# The one break that removes a SKU's prices (contract §3) [doc].
BLANK_BREAK = [{"quantity": None, "price": None}]

# One validated row: (price list slug or None, sku, [(min_quantity, price), ...] sorted).
PriceRow = tuple[str | None, str, list[tuple[int, float]]]


def list_price_lists(portal: Portal, request: Request) -> Response:
    page = query_int(request.query, "page", default=1, minimum=1)
    size = query_int(request.query, "page_size", default=50, minimum=1, maximum=MAX_V2_PAGE_SIZE)
    state = portal.state
    with state.lock:
        slugs = state.price_list_order[(page - 1) * size : page * size]
        data = [state.price_lists[slug] for slug in slugs]
        total = len(state.price_list_order)
    return Response(200, {"data": data, "pagination": pagination(page, size, total)})


def create_price_list(portal: Portal, request: Request) -> Response:
    body = require_object(request.body(), "price list")
    errors = FieldErrors()
    slug = text(errors, body, "slug", required=True, max_len=MAX_SLUG_LENGTH)
    price_list = {
        "slug": slug,
        "name": text(errors, body, "name", required=True, max_len=MAX_NAME_LENGTH),
        "currency_code": currency_code(errors, body, "currency_code"),
        "source": text(errors, body, "source", max_len=MAX_NAME_LENGTH) or "integration",
        "tax_inclusive_display": boolean(errors, body, "tax_inclusive_display", default=False),
    }
    if body.get("currency_code") is None:
        errors.add("required", "currency_code is required.", "currency_code")
    errors.raise_if_any("price list")
    assert slug is not None
    state = portal.state
    with portal.locks.hold(("price-list", slug)), state.lock:
        if slug in state.price_lists:
            raise already_exists("price list", slug, "slug", status=400)
        check_limit("price_lists", len(state.price_lists) + 1, "slug")
        state.add_price_list(price_list)
    return Response(201, price_list)


def get_pricing(portal: Portal, request: Request) -> Response:
    """The whole list, not paged; 204 with no body when it prices nothing."""
    slug = request.params["slug"]
    state = portal.state
    with state.lock:
        if slug not in state.price_lists:
            raise not_found("price list", slug, "slug")
        prices = state.pricing[slug]
        rows = [
            {"sku": sku, "pricing": [{"quantity": q, "price": p} for q, p in prices[sku]]}
            for sku in state.sorted_skus(slug)
        ]
    return Response(200, rows) if rows else Response(204)


def patch_pricing(portal: Portal, request: Request) -> Response:
    slug = request.params["slug"]
    state = portal.state
    with state.lock:
        if slug not in state.price_lists:
            raise not_found("price list", slug, "slug")
    with portal.locks.hold(("price-list", slug)):
        body = require_array(request.body(), "pricing update", MAX_BATCH_ITEMS)
        rows = parse_price_rows(body, with_slug=False)
        with state.lock:
            if slug not in state.price_lists:  # removed by a reset meanwhile
                raise not_found("price list", slug, "slug")
            _check_product_limit(state, [(slug, sku, breaks) for _, sku, breaks in rows])
            state.replace_prices(slug, [(sku, breaks) for _, sku, breaks in rows])
    return Response(204)


def batch_update_pricing(portal: Portal, request: Request) -> Response:
    body = require_array(request.body(), "pricing update", MAX_BATCH_ITEMS)
    rows = parse_price_rows(body, with_slug=True)
    slugs = sorted({slug for slug, _, _ in rows if slug is not None})
    state = portal.state
    with portal.locks.hold(*(("price-list", slug) for slug in slugs)), state.lock:
        errors = FieldErrors()
        for line, (slug, _, _) in enumerate(rows):
            if slug not in state.price_lists:
                errors.add("not-found", f"No price list {slug!r}.", "price_list_slug", line=line)
        errors.raise_if_any("pricing update")
        _check_product_limit(state, rows)  # type: ignore[arg-type]
        by_list: dict[str, list[tuple[str, list[tuple[int, float]]]]] = {}
        for slug, sku, breaks in rows:
            by_list.setdefault(slug, []).append((sku, breaks))  # type: ignore[arg-type]
        for slug, list_rows in by_list.items():
            state.replace_prices(slug, list_rows)
    return Response(204)


def _check_product_limit(state: PortalState, rows: list[tuple[str, str, list[Any]]]) -> None:
    """At most 50,000 distinct SKUs priced across all lists (the products limit, §1)."""
    new = state.new_priced_skus(rows)
    if new:
        check_limit("products", len(state.lists_pricing_sku) + new, "sku")


def parse_price_rows(body: list[Any], *, with_slug: bool) -> list[PriceRow]:
    """Check every row; a 400 listing each bad row (``line``, ``field``) or all rows, clean."""
    errors = FieldErrors()
    rows: list[PriceRow] = []
    seen: set[tuple[str | None, str]] = set()
    for line, item in enumerate(body):
        if type(item) is not dict:
            errors.add("invalid-type", "Each row must be an object.", "(row)", line=line)
            continue
        slug = None
        if with_slug:
            slug = item.get("price_list_slug")
            if type(slug) is not str or not slug:
                errors.add("required", "price_list_slug is required.", "price_list_slug", line=line)
                continue
        sku = item.get("sku")
        if type(sku) is not str or not sku or len(sku) > MAX_KEY_LENGTH:
            message = f"sku must be a non-empty string of at most {MAX_KEY_LENGTH} characters."
            errors.add("invalid-value", message, "sku", line=line)
            continue
        if (slug, sku) in seen:
            errors.add("duplicate", f"SKU {sku!r} is sent twice in this call.", "sku", line=line)
            continue
        seen.add((slug, sku))
        breaks = _parse_breaks(errors, item.get("pricing"), line)
        if breaks is not None:
            rows.append((slug, sku, breaks))
    errors.raise_if_any("pricing update")
    return rows


def _parse_breaks(errors: FieldErrors, pricing: Any, line: int) -> list[tuple[int, float]] | None:
    """The row's breaks sorted by quantity, or ``None`` after recording why not."""
    if type(pricing) is not list:
        errors.add("invalid-type", "pricing must be an array of breaks.", "pricing", line=line)
        return None
    if pricing == BLANK_BREAK:
        return []  # the documented removal: the SKU loses every price in this list
    if not pricing:
        message = (
            "pricing must have at least one break; to remove the SKU's prices send one blank "
            'break [{"quantity": null, "price": null}].'
        )
        errors.add("required", message, "pricing", line=line)
        return None
    # Fast path for the million-row push: well-formed breaks pass in one comprehension and
    # one check; anything else goes through the careful path that names the problem.
    try:
        pairs = [(entry["quantity"], entry["price"]) for entry in pricing]
        distinct = len({quantity for quantity, _ in pairs}) == len(pairs)
    except (TypeError, KeyError):
        distinct = False
    if distinct and all(
        type(q) is int and q >= 1 and type(p) in _NUMBER_TYPES and 0 <= p < _INFINITY
        for q, p in pairs
    ):
        return sorted((q, float(p)) for q, p in pairs)
    return _parse_breaks_carefully(errors, pricing, line)


def _parse_breaks_carefully(
    errors: FieldErrors, pricing: list[Any], line: int
) -> list[tuple[int, float]] | None:
    breaks: list[tuple[int, float]] = []
    quantities: set[int] = set()
    valid = True
    for j, entry in enumerate(pricing):
        if type(entry) is not dict:
            errors.add("invalid-type", "A break must be an object.", f"pricing[{j}]", line=line)
            valid = False
            continue
        # JSON values of any type: the checks below are what narrows them.
        quantity: Any = entry.get("quantity")
        price: Any = entry.get("price")
        if quantity is None and price is None:
            message = "A blank break removes the SKU's prices and must be the only break."
            errors.add("invalid-value", message, f"pricing[{j}]", line=line)
            valid = False
            continue
        if type(quantity) is not int or quantity < 1:
            message = "quantity must be an integer of at least 1."
            errors.add("invalid-value", message, f"pricing[{j}].quantity", line=line)
            valid = False
        elif quantity in quantities:
            message = f"Two breaks for quantity {quantity}."
            errors.add("duplicate", message, f"pricing[{j}].quantity", line=line)
            valid = False
        else:
            quantities.add(quantity)
        if not is_number(price) or price < 0:
            message = "price must be a number of at least 0."
            errors.add("invalid-value", message, f"pricing[{j}].price", line=line)
            valid = False
        if valid:
            breaks.append((quantity, float(price)))
    if not valid:
        return None
    breaks.sort()
    return breaks


# -- the price a customer pays ------------------------------------------------------------------
def fetch_customer_pricing(portal: Portal, request: Request) -> Response:
    """What the portal would charge a customer for each line, by its own price rule."""
    body = require_object(request.body(), "pricing request")
    items = body.get("line_items")
    if isinstance(items, list):
        check_limit("line_items", len(items), "line_items")
    errors = FieldErrors()
    customer_ref = text(errors, body, "customer_id", required=True, max_len=254)
    lookup_by = one_of(errors, body, "customer_lookup_by", CUSTOMER_LOOKUPS, default="sparklayer")
    lines = _pricing_lines(errors, items)
    errors.raise_if_any("pricing request")
    assert customer_ref is not None and lookup_by is not None
    state = portal.state
    with state.lock:
        customer = state.find_customer(lookup_by, customer_ref)
        if customer is None:
            raise invalid_field(
                "customer_id", f"No customer with {lookup_by} {customer_ref!r}.", "not-found"
            )
        lists = state.customer_price_lists(customer)
        if not lists:
            message = f"Customer {customer_ref!r} has no price lists; nothing can be priced."
            raise invalid_field("customer_id", message, "no-price-lists")
        currencies = {slug: state.price_lists[slug]["currency_code"] for slug, _ in lists}
        priced = [
            _customer_line(lists, currencies, sku, quantity, customer["discount_percentage"])
            for sku, quantity in lines
        ]
    partial = any("error" in line for line in priced)
    return Response(207 if partial else 200, {"line_items": priced})


def _customer_line(
    lists: list[tuple[str, Any]],
    currencies: dict[str, str],
    sku: str,
    quantity: int,
    discount_percentage: float,
) -> dict[str, Any]:
    price = buyer_price(lists, sku, quantity, discount_percentage)
    if price is None:
        return {
            "sku": sku,
            "quantity": quantity,
            "error": f"SKU {sku!r} has no price for this customer at quantity {quantity}.",
        }
    currency = currencies[price.slug]
    return {
        "sku": sku,
        "quantity": quantity,
        "unit_price": money(price.unit_price, currency),
        "line_total": money(to_money(price.unit_price * quantity), currency),
    }


def _pricing_lines(errors: FieldErrors, raw: Any) -> list[tuple[str, int]]:
    if not isinstance(raw, list):
        errors.add("required", "line_items must be an array of {sku, quantity}.", "line_items")
        return []
    lines = []
    for i, item in enumerate(raw):
        prefix = f"line_items[{i}]."
        if not isinstance(item, dict):
            errors.add("invalid-type", "A line item must be an object.", f"line_items[{i}]")
            continue
        sku = text(errors, item, "sku", required=True, max_len=MAX_KEY_LENGTH, prefix=prefix)
        quantity = item.get("quantity")
        if type(quantity) is not int or quantity < 1:
            message = f"{prefix}quantity must be a whole number of at least 1."
            errors.add("invalid-value", message, prefix + "quantity")
            continue
        if sku is not None:
            lines.append((sku, quantity))
    return lines
