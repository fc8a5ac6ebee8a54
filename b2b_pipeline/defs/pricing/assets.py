"""Price lists, ERP → portal: group lists, customer-specific lists and quantity breaks; and the
price probe that asks the portal what buyers would pay.

The steps are the flows of ``flows/price_sync.py`` (what the portal holds, and why
customer-specific lists are pushed as their effective breaks) and ``flows/price_probe.py``;
these assets declare the systems they use and show what happened.

Sequencing:
- **Real time for accuracy**: a sensor watches the ERP's price lists and pushes a change within
  minutes, sending only the SKUs whose breaks changed, in batches of 500 (the API maximum).
- **Batched for load**: every night a full comparison reads the portal's actual prices back and
  repairs any drift (e.g. a price edited by hand in the portal).
- **Order of operations**: missing lists are created first, then filled, and only then are
  customers pointed at them (``portal_customers`` runs after this asset), so no buyer ever
  sees an empty list.
- **Data limits**: a sync that would take the portal past SparkLayer's hard limit on price lists
  or priced SKUs creates no new list, or prices no new SKU, that run (a ``PORTAL_LIMIT_EXCEEDED``
  exception says which); past the recommended limit it only warns in the run's metadata.
- **Price probe** (hourly): ``portal_price_probe`` asks the portal, through
  ``fetch-customer-pricing``, what a sample of accounts would pay at each break and files a
  ``PORTAL_PRICE_DIFFERS`` exception per account and SKU where it is not the ERP's price.
"""

from collections.abc import Iterator

import dagster as dg
import pandas as pd
from dagster_pandera import pandera_schema_to_dagster_type
from pydantic import Field

from b2b_pipeline.defs.customers.columns import column_schema_metadata
from b2b_pipeline.defs.groups import ERP, PORTAL_SYNC
from b2b_pipeline.defs.resources import (
    AuditResource,
    ErpResource,
    MappingsResource,
    SparkLayerResource,
)
from b2b_pipeline.domain.schemas.master_data import (
    ErpPriceListItems,
    ErpPriceLists,
    ErpProducts,
)
from b2b_pipeline.flows import price_probe, price_sync


class PriceSyncConfig(dg.Config):
    """``full_comparison`` reads the portal's actual prices instead of trusting the snapshot of
    what was last pushed: slower (one read per list), and it repairs drift."""

    full_comparison: bool = False


@dg.asset(
    group_name=ERP,
    kinds={"sqlalchemy", "pandas"},
    dagster_type=pandera_schema_to_dagster_type(ErpProducts),
    metadata=column_schema_metadata(ErpProducts),
    description="The ERP catalogue (unique SKUs); every priced or stocked SKU must be in it.",
)
def erp_products(
    context: dg.AssetExecutionContext,
    erp: ErpResource,
    audit: AuditResource,
    mappings: MappingsResource,
) -> dg.Output[pd.DataFrame]:
    result = price_sync.check_erp_products(
        erp=erp.gateway, audit=audit.store, mappings=mappings.mappings, run_id=context.run.run_id
    )
    return dg.Output(
        result.products,
        metadata={
            "dagster/row_count": len(result.products),
            "active": result.active,
            "held_back": result.held_back,
        },
    )


@dg.multi_asset(
    group_name=ERP,
    outs={
        "erp_price_lists": dg.AssetOut(
            kinds={"sqlalchemy", "pandas"},
            metadata=column_schema_metadata(ErpPriceLists),  # the Columns tab, as every extract
            description="ERP price lists that can be portal lists (code ≤ 30 characters, "
            "known currency, existing parent list).",
        ),
        "erp_price_list_items": dg.AssetOut(
            kinds={"sqlalchemy", "pandas"},
            dagster_type=pandera_schema_to_dagster_type(ErpPriceListItems),
            metadata=column_schema_metadata(ErpPriceListItems),
            description="Price breaks that passed every rule (price ≥ 0, minimum quantity ≥ "
            "1, unique list × SKU × break, SKU in the catalogue).",
        ),
        "erp_held_back_prices": dg.AssetOut(
            kinds={"sqlalchemy", "pandas"},
            description="List × SKU pairs with a broken break: the portal keeps their last "
            "good prices until the ERP is corrected (each is in the exception queue).",
        ),
    },
)
def erp_price_data(
    context: dg.AssetExecutionContext,
    erp_products: pd.DataFrame,
    erp: ErpResource,
    audit: AuditResource,
    mappings: MappingsResource,
) -> Iterator[dg.Output[pd.DataFrame]]:
    prices = price_sync.check_erp_prices(
        erp=erp.gateway,
        audit=audit.store,
        mappings=mappings.mappings,
        run_id=context.run.run_id,
        products=erp_products,
    )
    yield dg.Output(
        prices.lists, "erp_price_lists", metadata={"dagster/row_count": len(prices.lists)}
    )
    yield dg.Output(
        prices.items,
        "erp_price_list_items",
        metadata={"dagster/row_count": len(prices.items), "rows_in_erp": prices.rows_in_erp},
    )
    yield dg.Output(
        prices.held_back,
        "erp_held_back_prices",
        metadata={"dagster/row_count": len(prices.held_back)},
    )


@dg.asset(
    group_name=PORTAL_SYNC,
    kinds={"sparklayer"},
    description="Every ERP price list in the portal with exactly the ERP's breaks: missing "
    "lists created first, then only the SKUs whose breaks changed sent, 500 per call.",
)
def portal_price_lists(
    context: dg.AssetExecutionContext,
    config: PriceSyncConfig,
    erp_price_lists: pd.DataFrame,
    erp_price_list_items: pd.DataFrame,
    erp_held_back_prices: pd.DataFrame,
    sparklayer: SparkLayerResource,
    erp: ErpResource,
    audit: AuditResource,
    mappings: MappingsResource,
) -> dg.MaterializeResult:
    try:
        result = price_sync.sync_price_lists(
            portal=sparklayer.client,
            erp=erp.gateway,
            audit=audit.store,
            state=audit.state,
            mappings=mappings.mappings,
            run_id=context.run.run_id,
            erp_lists=erp_price_lists,
            erp_items=erp_price_list_items,
            held_back=erp_held_back_prices,
            full_comparison=config.full_comparison,
        )
    except price_sync.EmptyPriceExtract as refused:  # nothing was sent: fail the step, say why
        raise dg.Failure(str(refused)) from refused
    for warning in result.limit_warnings:
        context.log.warning(warning)
    return dg.MaterializeResult(
        metadata={
            "full_comparison": result.full_comparison,
            "lists": result.lists,
            "lists_created": result.lists_created,
            "skus_changed": result.skus_changed,
            "skus_added": result.skus_added,
            "skus_repriced": result.skus_repriced,
            "skus_removed": result.skus_removed,
            "skus_refused_by_portal": result.skus_refused_by_portal,
            "pricing_calls": result.pricing_calls,
            "minimum_pricing_calls": result.minimum_pricing_calls,
            "held_back_in_erp": result.held_back_in_erp,
            "customer_specific_lists": result.customer_specific_lists,
            "portal_limits": dg.MetadataValue.json(result.portal_limits),
            "refused_by_portal_limit": dg.MetadataValue.json(result.refused_by_portal_limit),
            "skus_held_by_portal_limit": result.skus_held_by_portal_limit,
            "portal_limit_warnings": dg.MetadataValue.json(result.limit_warnings),
        },
    )


price_sync_job = dg.define_asset_job(
    "price_sync_job",
    # The customer assets ride along so that a newly filled list is given to its customers in
    # the same run (a customer is pointed at a list only once it holds prices); with nothing
    # to change they send no write.
    selection=dg.AssetSelection.assets(erp_products, erp_price_data, portal_price_lists)
    | dg.AssetSelection.assets("erp_customers", "portal_customer_groups", "portal_customers"),
    description="ERP price lists and quantity breaks to the portal (only what changed), then "
    "customers pointed at any list just filled.",
)


# --- the price probe ----------------------------------------------------------------------


class PriceProbeConfig(dg.Config):
    """How much the hourly probe asks the portal. Every active account with its own price list
    is probed on every run; ``probe_share`` of the others too, a different slice each day;
    ``max_skus_per_account`` bounds the SKUs asked per account (at every break quantity)."""

    probe_share: float = Field(
        default=0.1, ge=0.0, le=1.0, description="Share of group-list accounts probed per day."
    )
    max_skus_per_account: int = Field(
        default=20, ge=1, description="Most SKUs asked per account and run."
    )


@dg.asset(
    group_name=PORTAL_SYNC,
    kinds={"sparklayer"},
    # Lineage: it checks what the price and customer syncs left on the portal.
    deps=[portal_price_lists, "portal_customers"],
    description="Asks the portal (fetch-customer-pricing) what a sample of accounts would pay "
    "for their priced SKUs at each break, compares it with the ERP's price rule, and queues a "
    "PORTAL_PRICE_DIFFERS exception per account and SKU that differs, before a buyer orders "
    "at that price; a later probe that finds them equal resolves it.",
)
def portal_price_probe(
    context: dg.AssetExecutionContext,
    config: PriceProbeConfig,
    erp_customers: pd.DataFrame,
    erp_price_lists: pd.DataFrame,
    erp_price_list_items: pd.DataFrame,
    erp_held_back_prices: pd.DataFrame,
    sparklayer: SparkLayerResource,
    audit: AuditResource,
) -> dg.MaterializeResult:
    result = price_probe.run_price_probe(
        portal=sparklayer.client,
        audit=audit.store,
        run_id=context.run.run_id,
        customers=erp_customers,
        price_lists=erp_price_lists,
        items=erp_price_list_items,
        held_back=erp_held_back_prices,
        probe_share=config.probe_share,
        max_skus_per_account=config.max_skus_per_account,
    )
    for warning in result.warnings:
        context.log.warning(warning)
    return dg.MaterializeResult(
        metadata={
            "probe_date": result.probe_date.isoformat(),
            "probe_share": config.probe_share,
            "max_skus_per_account": config.max_skus_per_account,
            "accounts_probed": result.accounts_probed,
            "accounts_with_own_list": result.accounts_with_own_list,
            "accounts_not_found": dg.MetadataValue.json(result.accounts_not_found[:50]),
            "open_differences_rechecked": result.open_differences_rechecked,
            "lines_probed": result.lines_probed,
            "lines_differing": result.lines_differing,
            "skus_differing": result.skus_differing,
            "exceptions_opened": result.exceptions_opened,
            "exceptions_resolved": result.exceptions_resolved,
            # What the probe cost against the portal's allowance (token requests included).
            "api_calls": result.api_calls,
            "rate_limit_wait_seconds": result.rate_limit_wait_seconds,
        },
    )


price_probe_job = dg.define_asset_job(
    "price_probe_job",
    # The ERP extracts ride along: the probe compares with the ERP's prices as they are now.
    selection=dg.AssetSelection.assets(erp_products, erp_price_data, portal_price_probe)
    | dg.AssetSelection.assets("erp_customers"),
    description="Ask the portal what a sample of accounts would pay and queue a PRICING "
    "exception wherever it is not the ERP's price.",
)
