"""Price checks: every price refers to a real product, and the portal shows the ERP's prices."""

import dagster as dg
import pandas as pd

from b2b_pipeline.defs.pricing.assets import portal_price_lists
from b2b_pipeline.defs.resources import ErpResource, SparkLayerResource
from b2b_pipeline.flows import price_sync


@dg.asset_check(
    asset="erp_price_list_items",
    description="Every SKU with a price in the ERP is in the ERP catalogue.",
)
def every_priced_sku_in_catalogue(erp: ErpResource) -> dg.AssetCheckResult:
    unknown = erp.gateway.priced_skus_not_in_catalogue()
    return dg.AssetCheckResult(
        passed=not unknown,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"{len(unknown)} priced SKU(s) are not in the catalogue; their prices are held "
            "back and queued."
            if unknown
            else "Every priced SKU is in the catalogue."
        ),
        metadata={"unknown_skus": dg.MetadataValue.json(unknown[:50])},
    )


@dg.asset_check(
    asset=portal_price_lists,
    additional_ins={
        "erp_price_lists": dg.AssetIn(),
        "erp_price_list_items": dg.AssetIn(),
        "erp_held_back_prices": dg.AssetIn(),
    },
    description="After the sync the portal's prices equal what the ERP implies (group lists as "
    "in the ERP, customer-specific lists as their effective breaks): read back in full for up "
    f"to {price_sync.COMPARED_LISTS_MAX} lists, a deterministic sample of lists beyond that.",
)
def portal_prices_match_erp(
    sparklayer: SparkLayerResource,
    erp_price_lists: pd.DataFrame,
    erp_price_list_items: pd.DataFrame,
    erp_held_back_prices: pd.DataFrame,
) -> dg.AssetCheckResult:
    drift = price_sync.portal_price_drift(
        portal=sparklayer.client,
        erp_lists=erp_price_lists,
        erp_items=erp_price_list_items,
        held_back=erp_held_back_prices,
    )
    return dg.AssetCheckResult(
        passed=not drift.differing,
        metadata={
            "lists_compared": drift.lists_compared,
            "skus_differing": len(drift.differing),
            "examples": dg.MetadataValue.json(drift.differing[:20]),
        },
    )
