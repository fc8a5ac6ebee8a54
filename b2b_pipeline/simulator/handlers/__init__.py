"""Request handlers: the SparkLayer API (``/api``) and the test harness (``/_sim``)."""

from __future__ import annotations

from b2b_pipeline.simulator.handlers import (
    buyers,
    control,
    customers,
    pricing,
    purchases,
    stock,
    sync_log,
    token,
)
from b2b_pipeline.simulator.routes import Route


def api_routes() -> list[Route]:
    """Every endpoint of contracts/sparklayer-api.md (version 2) §1-6."""
    return [
        Route("POST", "/api/auth/token", token.issue_token),
        Route("GET", "/api/v2/customers", customers.list_customers),
        Route("GET", "/api/v2/customers/{lookupBy}/{identifier}", customers.get_customer),
        Route("PUT", "/api/v2/customers/{lookupBy}/{identifier}", customers.put_customer, True),
        Route(
            "DELETE", "/api/v2/customers/{lookupBy}/{identifier}", customers.delete_customer, True
        ),
        Route("GET", "/api/v1/customer-groups", customers.list_customer_groups),
        Route("POST", "/api/v1/customer-groups", customers.create_customer_group, True),
        Route("PATCH", "/api/v1/customer-groups/{slug}", customers.patch_customer_group, True),
        Route("GET", "/api/v2/price-lists", pricing.list_price_lists),
        Route("POST", "/api/v1/price-lists", pricing.create_price_list, True),
        Route("GET", "/api/v1/price-lists/{slug}/pricing", pricing.get_pricing),
        Route("PATCH", "/api/v1/price-lists/{slug}/pricing", pricing.patch_pricing, True),
        Route("PATCH", "/api/v1/batch-update-pricing", pricing.batch_update_pricing, True),
        # A read sent as POST (the line items do not fit a query string): not a write.
        Route("POST", "/api/v1/fetch-customer-pricing", pricing.fetch_customer_pricing),
        Route("GET", "/api/v1/stock-locations", stock.list_stock_locations),
        Route("POST", "/api/v1/stock-locations", stock.create_stock_location, True),
        Route("POST", "/api/v1/batch-update-stock", stock.batch_update_stock, True),
        # A read sent as POST (the SKU list is too long for a query string): not a write.
        Route("POST", "/api/v1/batch-fetch-stock", stock.batch_fetch_stock),
        Route("GET", "/api/v1/purchases", purchases.list_purchases),
        Route("GET", "/api/v1/purchases/{lookupBy}/{identifier}", purchases.get_purchase),
        Route("PUT", "/api/v1/purchases/{lookupBy}/{identifier}", purchases.put_purchase, True),
        Route(
            "DELETE", "/api/v1/purchases/{lookupBy}/{identifier}", purchases.delete_purchase, True
        ),
        Route(
            "GET",
            "/api/v1/purchases/{lookupBy}/{identifier}/transactions",
            purchases.list_transactions,
        ),
        Route("GET", "/api/v1/sync-log/{integration}/{data_type}", sync_log.get_sync_log),
        Route("PUT", "/api/v1/sync-log/{integration}/{data_type}", sync_log.put_sync_log, True),
    ]


def control_routes() -> list[Route]:
    """The simulator-only endpoints of §7 and docs/architecture.md's test controls."""
    return [
        Route("POST", "/_sim/reset", control.reset),
        Route("GET", "/_sim/state", control.state_counts),
        Route("POST", "/_sim/customers/register", buyers.register_customer),
        Route("POST", "/_sim/orders", buyers.place_order),
        Route("PATCH", "/_sim/purchases/{id}", buyers.change_purchase),
        Route("GET", "/_sim/faults", control.get_faults),
        Route("PUT", "/_sim/faults", control.put_faults),
        Route("GET", "/_sim/calls", control.get_calls),
        Route("DELETE", "/_sim/calls", control.clear_calls),
        Route("GET", "/_sim/config", control.get_config),
        Route("PUT", "/_sim/config", control.put_config),
        Route("POST", "/_sim/tokens/revoke", control.revoke_tokens),
    ]
