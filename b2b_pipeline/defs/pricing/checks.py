"""Price checks: every price refers to a real product, and the portal shows the ERP's prices."""

import dagster as dg
import pandas as pd

from b2b_pipeline.defs.pricing.assets import portal_price_lists, read_portal_pricing
from b2b_pipeline.defs.resources import ErpResource, SparkLayerResource

# How many lists the post-sync comparison reads back in full; beyond that it samples, so the
# check stays a few API calls on a merchant with thousands of customer-specific lists.
FULL_COMPARISON_LISTS = 20


@dg.asset_check(
    asset="erp_price_list_items",
    description="Every SKU with a price in the ERP is in the ERP catalogue.",
)
def every_priced_sku_in_catalogue(erp: ErpResource) -> dg.AssetCheckResult:
    unknown = erp.get_gateway().priced_skus_not_in_catalogue()
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
    f"to {FULL_COMPARISON_LISTS} lists, a deterministic sample of lists beyond that.",
)
def portal_prices_match_erp(
    sparklayer: SparkLayerResource,
    erp_price_lists: pd.DataFrame,
    erp_price_list_items: pd.DataFrame,
    erp_held_back_prices: pd.DataFrame,
) -> dg.AssetCheckResult:
    from b2b_pipeline.domain.price_lists import price_changes

    slugs = sorted(erp_price_list_items["price_list_code"].unique())
    if len(slugs) > FULL_COMPARISON_LISTS:
        step = len(slugs) / FULL_COMPARISON_LISTS
        slugs = [slugs[int(i * step)] for i in range(FULL_COMPARISON_LISTS)]
    with sparklayer.get_client() as client:
        portal = read_portal_pricing(client, slugs)
    # A customer-specific list's effective breaks need its parent's breaks too, compared or not.
    compared = erp_price_lists["code"].isin(slugs)
    parents = set(erp_price_lists.loc[compared, "parent_code"].dropna())
    erp = erp_price_list_items[erp_price_list_items["price_list_code"].isin(parents | set(slugs))]
    drift = price_changes(
        erp, portal, held_back=erp_held_back_prices, erp_price_lists=erp_price_lists
    )
    drift = drift[drift["price_list_slug"].isin(slugs)]
    return dg.AssetCheckResult(
        passed=drift.empty,
        metadata={
            "lists_compared": len(slugs),
            "skus_differing": len(drift),
            "examples": dg.MetadataValue.json(
                (drift["price_list_slug"] + "/" + drift["sku"]).head(20).tolist()
            ),
        },
    )
