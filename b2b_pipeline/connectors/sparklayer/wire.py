"""The SparkLayer wire format the client relies on (contract version 2), in one place.

Every path, query parameter, page size, batch maximum, paging style and field name the client
uses is here; ``client.py`` only refers to these names. Each item is marked **[doc]** (published
in SparkLayer's developer docs) or **[assumed]** (not published, chosen by the contract, see
``contracts/sparklayer-api.md``). When SparkLayer publishes, or a real account shows, a shape
that differs from an [assumed] one, this module is the one to correct. The purchase document
itself (its keys, money, the write-back body) is read and written in ``purchases.py``.

What version 2 changed for the client, and where it shows here:
- purchases are filtered by ``dates[last_updated][gte|lte]``, ``type`` and
  ``customer_identifiers[sparklayer]`` and listed **newest first** (no ``updated_since``);
- pricing reads are one unpaged call, answered 204 with no body when the list is empty; a SKU's
  prices are removed with one blank break, not an empty list;
- ``batch-fetch-stock`` nests each SKU's levels in ``stock_levels``;
- a duplicate price list or customer group is a **400** (not a 409) and is recognised by the
  ``resource-already-exists`` code or by the problem text saying so;
- ``fetch-customer-pricing`` (the portal's own price for a customer) and the hard data limits.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

# --- Transport (§1) [doc] ----------------------------------------------------------------------
TOKEN_PATH: Final = "/api/auth/token"
TOKEN_GRANT_TYPE: Final = "client_credentials"
TOKEN_FIELD: Final = "access_token"
TOKEN_TTL_FIELD: Final = "expires_in"
SITE_HEADER: Final = "Site-Id"
JSON_MEDIA_TYPE: Final = "application/json"

# --- Hard data limits (§1) [doc] ---------------------------------------------------------------
# Past these the portal refuses the data; the pipeline refuses, before sending, a sync that
# would pass one (with an exception naming the limit). The recommended limits are lower.
HARD_LIMITS: Final = {
    "price_lists": 15000,
    "customer_groups": 100,
    "customers": 250000,
    "products": 50000,  # distinct SKUs priced by any list
    "line_items": 250,  # per cart, quote or order
    "addresses": 500,  # per customer
}

# --- Problem documents (RFC 7807) [doc] --------------------------------------------------------
PROBLEM_TITLE: Final = "title"
PROBLEM_STATUS: Final = "status"
PROBLEM_DETAIL: Final = "detail"
PROBLEM_ROWS: Final = "errors"
PROBLEM_ROW_CODE: Final = "code"
PROBLEM_ROW_MESSAGE: Final = "message"
# The contract names the offending attribute ``property`` [doc] in general problem documents;
# batch row errors also carry ``field`` [assumed], the row's own attribute (``property`` then
# locates it in the request, e.g. ``[3].sku``). The client reads the first one set, in this order.
PROBLEM_ROW_FIELD_KEYS: Final = ("field", "property")
# Index of the refused row in the batch that was sent [assumed: 0-based, per call].
PROBLEM_ROW_LINE: Final = "line"
PROBLEM_ROW_LINE_BASE: Final = 0
ALREADY_EXISTS_CODE: Final = "resource-already-exists"  # [doc]
# A duplicate group or price list is a 400 whose code may be missing [assumed]: the problem's
# title, detail or row messages saying this (case-insensitive) also mean "it already exists".
ALREADY_EXISTS_PHRASES: Final = ("already exists", "already exist")

# --- Customers (§2) ----------------------------------------------------------------------------
CUSTOMERS_PATH: Final = "/api/v2/customers"  # [assumed: no list endpoint is documented]
CUSTOMER_PATH: Final = "/api/v2/customers/{lookup_by}/{identifier}"  # [doc]
CUSTOMER_LOOKUPS: Final = ("sparklayer", "platform", "email")  # [doc]
CUSTOMERS_PAGE_SIZE_MAX: Final = 250
CUSTOMER_ID_FIELD: Final = "id"
CUSTOMER_EXTERNAL_ID_FIELD: Final = "external_id"
CUSTOMER_EMAIL_FIELD: Final = "email"
# The body field that carries the identifier of each lookup (the URL's identifier must match it).
CUSTOMER_LOOKUP_FIELDS: Final = {
    "sparklayer": CUSTOMER_ID_FIELD,
    "platform": CUSTOMER_EXTERNAL_ID_FIELD,
    "email": CUSTOMER_EMAIL_FIELD,
}
CUSTOMER_GROUPS_PATH: Final = "/api/v1/customer-groups"  # not paged [doc]
CUSTOMER_GROUP_SLUG_FIELD: Final = "slug"

# --- Price lists and pricing (§3) --------------------------------------------------------------
PRICE_LISTS_PAGED_PATH: Final = "/api/v2/price-lists"  # [doc]
PRICE_LISTS_PAGE_SIZE_MAX: Final = 250
PRICE_LISTS_CREATE_PATH: Final = "/api/v1/price-lists"
PRICE_LIST_SLUG_FIELD: Final = "slug"
PRICE_LIST_SOURCE: Final = "integration"
PRICING_PATH: Final = "/api/v1/price-lists/{slug}/pricing"  # GET not paged; 204 when empty [doc]
BATCH_UPDATE_PRICING_PATH: Final = "/api/v1/batch-update-pricing"
PRICING_FIELD: Final = "pricing"
# The one break that removes every price of a SKU [doc]; inside the pipeline a change-set item
# with ``"pricing": []`` means "remove", and :func:`pricing_item` translates it.
BLANK_BREAK: Final = {"quantity": None, "price": None}
# Most SKUs (pricing) or rows (stock) one write call may carry [assumed].
BATCH_MAX_ITEMS: Final = 500

FETCH_CUSTOMER_PRICING_PATH: Final = "/api/v1/fetch-customer-pricing"  # [doc]
FETCH_CUSTOMER_PRICING_MAX_LINES: Final = 250  # [assumed: the line-item limit of a cart]
# The answer {"line_items": [{"sku", "quantity", "unit_price": money, "line_total": money,
# "error"?}]} [assumed]; 207 when some SKUs cannot be priced [doc].
PRICED_LINES_FIELD: Final = "line_items"
PRICED_SKU_FIELD: Final = "sku"
PRICED_QUANTITY_FIELD: Final = "quantity"
PRICED_UNIT_PRICE_FIELD: Final = "unit_price"
PRICED_ERROR_FIELD: Final = "error"
MONEY_NUMBER_FIELD: Final = "number"  # money is {"number": "12.50", "currency": "GBP"} [doc]

# --- Stock (§4) --------------------------------------------------------------------------------
STOCK_LOCATIONS_PATH: Final = "/api/v1/stock-locations"  # not paged [doc]
STOCK_LOCATION_EXTERNAL_ID_FIELD: Final = "external_id"
BATCH_UPDATE_STOCK_PATH: Final = "/api/v1/batch-update-stock"  # 204 [doc]
BATCH_FETCH_STOCK_PATH: Final = "/api/v1/batch-fetch-stock"
BATCH_FETCH_STOCK_MAX_SKUS: Final = 500  # [assumed: no maximum is published]
# The answer nests each SKU's levels [doc]; the keys inside a level are [assumed]. The client
# flattens them to one row per SKU and location with these keys.
STOCK_SKU_FIELD: Final = "sku"
STOCK_LEVELS_FIELD: Final = "stock_levels"
STOCK_LEVEL_FIELDS: Final = (
    "stock_location_id",
    "stock_location_external_id",
    "stock_level",
    "restock_date",
    "min_stock_level",
)

# --- Purchases (§5) ----------------------------------------------------------------------------
PURCHASES_PATH: Final = "/api/v1/purchases"  # a bare array, newest first [doc]
PURCHASE_PATH: Final = "/api/v1/purchases/{lookup_by}/{identifier}"  # PUT creates on a miss
PURCHASE_TRANSACTIONS_PATH: Final = "/api/v1/purchases/{lookup_by}/{identifier}/transactions"
PURCHASE_LOOKUPS: Final = ("sparklayer", "platform", "internal", "visible")
PURCHASES_LIMIT_MAX: Final = 500
PURCHASE_IDENTIFIERS_FIELD: Final = "purchase_identifiers"
# List filters [doc]; a server that ignores them gives the client more to re-filter, no less.
UPDATED_GTE_PARAM: Final = "dates[last_updated][gte]"
UPDATED_LTE_PARAM: Final = "dates[last_updated][lte]"
PLACED_GTE_PARAM: Final = "dates[placed][gte]"
PLACED_LTE_PARAM: Final = "dates[placed][lte]"
PURCHASE_TYPE_PARAM: Final = "type"
PURCHASE_CUSTOMER_PARAM: Final = "customer_identifiers[sparklayer]"
ORDER_BY_PARAM: Final = "order_by"  # ``-updated_at`` (the default) | ``updated_at`` [assumed]

# --- Sync log (§6) -----------------------------------------------------------------------------
SYNC_LOG_PATH: Final = "/api/v1/sync-log/{integration}/{data_type}"

# --- Paging styles -----------------------------------------------------------------------------
# 1. Numbered pages in an envelope (v2 customers [assumed], v2 price lists [doc]):
#    ``?page=N&page_size=M`` -> ``{"data": [...], "pagination": {"total_pages": T, ...}}``.
# 2. Offset pages as bare arrays (purchases [doc]): ``?limit=L&offset=O``, newest first; a page
#    shorter than ``limit`` is the last.
# Everything else (groups, stock locations, pricing, transactions) is one unpaged array.
PAGE_PARAM: Final = "page"
PAGE_SIZE_PARAM: Final = "page_size"
FIRST_PAGE: Final = 1
PAGE_DATA_FIELD: Final = "data"
PAGINATION_FIELD: Final = "pagination"
TOTAL_PAGES_FIELD: Final = "total_pages"
LIMIT_PARAM: Final = "limit"
OFFSET_PARAM: Final = "offset"


def page_records(body: Any) -> list[dict[str, Any]] | None:
    """The records of an enveloped page, or None when the body is not that shape."""
    if not isinstance(body, dict):
        return None
    records = body.get(PAGE_DATA_FIELD)
    return records if isinstance(records, list) else None


def page_count(body: dict[str, Any]) -> int | None:
    """``pagination.total_pages`` of an enveloped page, or None when the server omits it."""
    pagination = body.get(PAGINATION_FIELD)
    if not isinstance(pagination, dict):
        return None
    total = pagination.get(TOTAL_PAGES_FIELD)
    return total if isinstance(total, int) and not isinstance(total, bool) else None


def list_records(body: Any) -> list[dict[str, Any]] | None:
    """Records of an unpaged list endpoint: a bare array, or the same array in ``data``."""
    if isinstance(body, list):
        return body
    return page_records(body)


def timestamp(moment: datetime) -> str:
    """ISO-8601 UTC with ``Z``, the form the portal uses; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def token_request(client_id: str, client_secret: str) -> dict[str, str]:
    return {
        "grant_type": TOKEN_GRANT_TYPE,
        "client_id": client_id,
        "client_secret": client_secret,
    }


def price_list_request(slug: str, name: str, currency_code: str) -> dict[str, str]:
    return {
        "slug": slug,
        "name": name,
        "currency_code": currency_code,
        "source": PRICE_LIST_SOURCE,
    }


def pricing_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """A pricing change as the wire takes it: ``"pricing": []`` becomes the blank break."""
    row = dict(item)
    if row.get(PRICING_FIELD) == []:
        row[PRICING_FIELD] = [dict(BLANK_BREAK)]
    return row


def stock_location_request(name: str, external_id: str) -> dict[str, str]:
    return {"name": name, "external_id": external_id}


def batch_fetch_stock_request(skus: list[str], all_stock_locations: bool) -> dict[str, Any]:
    return {"skus": skus, "filter": {"all_stock_locations": all_stock_locations}}


def flat_stock_rows(entry: Any) -> list[dict[str, Any]]:
    """One ``batch-fetch-stock`` entry ``{sku, stock_levels: [...]}`` as flat rows, one per
    location; an entry already flat (one location) is kept as it is; anything else is dropped."""
    if not isinstance(entry, Mapping):
        return []
    levels = entry.get(STOCK_LEVELS_FIELD)
    if not isinstance(levels, list):
        return [dict(entry)] if "stock_level" in entry else []
    sku = entry.get(STOCK_SKU_FIELD)
    return [
        {STOCK_SKU_FIELD: sku, **{key: level.get(key) for key in STOCK_LEVEL_FIELDS}}
        for level in levels
        if isinstance(level, Mapping)
    ]


def fetch_customer_pricing_request(
    customer_id: str, lookup_by: str, line_items: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "customer_lookup_by": lookup_by,
        "line_items": [
            {"sku": line[PRICED_SKU_FIELD], "quantity": line[PRICED_QUANTITY_FIELD]}
            for line in line_items
        ],
    }


def money_amount(value: Any) -> float | None:
    """A money object's ``number`` (or a bare number) as a float; None when there is none."""
    if isinstance(value, Mapping):
        value = value.get(MONEY_NUMBER_FIELD)
    if value is None or isinstance(value, bool) or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
