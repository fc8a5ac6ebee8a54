"""Customer checks: the portal shows every account as the ERP intends it."""

import dagster as dg
import pandas as pd

from b2b_pipeline.defs.customers.assets import erp_customers, portal_customers
from b2b_pipeline.defs.resources import ErpResource, MappingsResource, SparkLayerResource


@dg.asset_check(
    asset=erp_customers,
    description="Every ERP customer group has a portal group in the mapping file.",
)
def no_unmapped_customer_group(erp: ErpResource, mappings: MappingsResource) -> dg.AssetCheckResult:
    groups = set(erp.get_gateway().read_customers()["customer_group"].dropna())
    unmapped = sorted(groups - set(mappings.load().customer_groups))
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
    with sparklayer.get_client() as client:
        lists = {pl.get("slug") for pl in client.iter_price_lists()}
        customers = list(client.iter_customers())
    missing = sorted(
        {
            f"{c.get('accounting_id') or c.get('id')}: {slug}"
            for c in customers
            for slug in (c.get("price_lists") or [])
            if slug not in lists
        }
    )
    return dg.AssetCheckResult(
        passed=not missing,
        metadata={"customers": len(customers), "missing": dg.MetadataValue.json(missing[:50])},
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
    from b2b_pipeline.domain import customers as rules
    from b2b_pipeline.domain.price_lists import validate_price_lists

    rules_mappings = mappings.load()
    lists, _ = validate_price_lists(erp.get_gateway().read_price_lists(), rules_mappings)
    desired = rules.desired_portal_customers(erp_customers, rules_mappings, erp_price_lists=lists)
    with sparklayer.get_client() as client:
        portal = pd.DataFrame(list(client.iter_customers()))
        portal_lists = {pl.get("slug") for pl in client.iter_price_lists()}
    # Lists not yet in the portal are withheld on purpose (never point at an empty list).
    desired["price_lists"] = desired["price_lists"].map(
        lambda slugs: [s for s in (slugs or []) if s in portal_lists]
    )
    changes = rules.customer_changes(desired, portal)
    drift = changes[changes["action"] != "unchanged"]
    return dg.AssetCheckResult(
        passed=drift.empty,
        metadata={
            "accounts": len(changes),
            "differing": len(drift),
            "examples": dg.MetadataValue.json(drift["account_code"].head(20).tolist()),
        },
    )
