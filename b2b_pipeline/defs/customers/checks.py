"""Customer checks: the portal shows every account as the ERP intends it."""

import dagster as dg
import pandas as pd

from b2b_pipeline.defs.customers.assets import erp_customers, portal_customers
from b2b_pipeline.defs.resources import ErpResource, MappingsResource, SparkLayerResource
from b2b_pipeline.flows import customer_sync


@dg.asset_check(
    asset=erp_customers,
    description="Every ERP customer group has a portal group in the mapping file.",
)
def no_unmapped_customer_group(erp: ErpResource, mappings: MappingsResource) -> dg.AssetCheckResult:
    unmapped = customer_sync.unmapped_customer_groups(erp=erp.gateway, mappings=mappings.mappings)
    return dg.AssetCheckResult(
        passed=not unmapped,
        description=(
            f"ERP groups with no portal group: {', '.join(unmapped)}. Add them to "
            "customer_groups in the mapping file."
            if unmapped
            else "Every ERP customer group is mapped."
        ),
        metadata={"unmapped_groups": dg.MetadataValue.json(unmapped)},
    )


@dg.asset_check(
    asset=portal_customers,
    description="After the sync, every customer's price lists exist in the portal.",
)
def customer_price_lists_exist_in_portal(sparklayer: SparkLayerResource) -> dg.AssetCheckResult:
    found = customer_sync.customers_on_missing_lists(portal=sparklayer.client)
    return dg.AssetCheckResult(
        passed=not found.missing,
        metadata={
            "customers": found.customers,
            "missing": dg.MetadataValue.json(found.missing[:50]),
        },
    )


@dg.asset_check(
    asset=portal_customers,
    additional_ins={"erp_customers": dg.AssetIn()},
    description="After the sync, the portal's customers equal what the ERP intends (group, "
    "lists, discount, tax exemption, credit): a full comparison, one page read per 250.",
)
def portal_customers_match_erp(
    erp_customers: pd.DataFrame,
    sparklayer: SparkLayerResource,
    erp: ErpResource,
    mappings: MappingsResource,
) -> dg.AssetCheckResult:
    drift = customer_sync.customer_drift(
        portal=sparklayer.client,
        erp=erp.gateway,
        mappings=mappings.mappings,
        erp_customers=erp_customers,
    )
    return dg.AssetCheckResult(
        passed=not drift.differing,
        metadata={
            "accounts": drift.accounts,
            "differing": len(drift.differing),
            "examples": dg.MetadataValue.json(drift.differing[:20]),
        },
    )
