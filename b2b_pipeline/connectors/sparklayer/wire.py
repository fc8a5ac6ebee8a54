"""The SparkLayer wire format the client relies on, in one place.

Everything here that the contract (``contracts/sparklayer-api.md``) marks **[assumed]** is an
educated guess about the real service: paths, page sizes, batch maxima, paging styles and the
field names the client reads. When SparkLayer publishes the real shape, this module is the one to
correct; ``client.py`` only refers to these names. Shapes marked [doc] are kept here too, so the
whole wire vocabulary reads in one screen.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

# --- Transport [doc] -----------------------------------------------------------------------
TOKEN_PATH: Final = "/api/auth/token"
TOKEN_GRANT_TYPE: Final = "client_credentials"
TOKEN_FIELD: Final = "access_token"
TOKEN_TTL_FIELD: Final = "expires_in"
SITE_HEADER: Final = "Site-Id"
JSON_MEDIA_TYPE: Final = "application/json"

# --- Problem documents (RFC 7807) [doc] ------------------------------------------------------
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
ALREADY_EXISTS_CODE: Final = "resource-already-exists"

# --- Customers (§2) ---------------------------------------------------------------------------
CUSTOMERS_PATH: Final = "/api/v2/customers"  # [assumed: the list endpoint]
CUSTOMER_PATH: Final = "/api/v2/customers/{lookup_by}/{identifier}"
CUSTOMER_LOOKUPS: Final = ("sparklayer", "platform")
CUSTOMERS_PAGE_SIZE_MAX: Final = 250
CUSTOMER_ID_FIELD: Final = "id"
CUSTOMER_EXTERNAL_ID_FIELD: Final = "external_id"
CUSTOMER_GROUPS_PATH: Final = "/api/v1/customer-groups"  # not paginated [assumed]

# --- Price lists and pricing (§3) -------------------------------------------------------------
PRICE_LISTS_PAGED_PATH: Final = "/api/v2/price-lists"
PRICE_LISTS_PAGE_SIZE_MAX: Final = 250
PRICE_LISTS_CREATE_PATH: Final = "/api/v1/price-lists"
PRICE_LIST_SOURCE: Final = "integration"
PRICING_PATH: Final = "/api/v1/price-lists/{slug}/pricing"
PRICING_PAGE_SIZE_MAX: Final = 1000  # [assumed]
BATCH_UPDATE_PRICING_PATH: Final = "/api/v1/batch-update-pricing"
# Most SKUs (pricing) or rows (stock) one write call may carry [assumed].
BATCH_MAX_ITEMS: Final = 500

# --- Stock (§4) -------------------------------------------------------------------------------
STOCK_LOCATIONS_PATH: Final = "/api/v1/stock-locations"  # not paginated [doc]
BATCH_UPDATE_STOCK_PATH: Final = "/api/v1/batch-update-stock"
BATCH_FETCH_STOCK_PATH: Final = "/api/v1/batch-fetch-stock"
BATCH_FETCH_STOCK_MAX_SKUS: Final = 500  # [assumed: no maximum is published]

# --- Purchases (§5) ---------------------------------------------------------------------------
PURCHASES_PATH: Final = "/api/v1/purchases"
PURCHASE_PATH: Final = "/api/v1/purchases/{lookup_by}/{identifier}"
PURCHASE_LOOKUPS: Final = ("sparklayer", "platform", "internal", "visible")
PURCHASES_LIMIT_MAX: Final = 500
PURCHASE_ID_FIELD: Final = "id"
PURCHASE_IDENTIFIERS_FIELD: Final = "purchase_identifiers"
PURCHASE_INTERNAL_IDENTIFIER: Final = "internal"
UPDATED_SINCE_PARAM: Final = "updated_since"  # [assumed]; the server may ignore it

# --- Sync log (§6) ----------------------------------------------------------------------------
SYNC_LOG_PATH: Final = "/api/v1/sync-log/{integration}/{data_type}"

# --- Paging styles ----------------------------------------------------------------------------
# 1. Numbered pages in an envelope (v2 customers [assumed], v2 price lists [doc]):
#    ``?page=N&page_size=M`` -> ``{"data": [...], "pagination": {"total_pages": T, ...}}``.
# 2. Numbered pages as bare arrays (pricing [assumed]): a page shorter than page_size is the last.
# 3. Offset pages as bare arrays (purchases [doc]): ``?limit=L&offset=O``; short page is the last.
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


def stock_location_request(name: str, external_id: str) -> dict[str, str]:
    return {"name": name, "external_id": external_id}


def batch_fetch_stock_request(skus: list[str], all_stock_locations: bool) -> dict[str, Any]:
    return {"skus": skus, "filter": {"all_stock_locations": all_stock_locations}}
