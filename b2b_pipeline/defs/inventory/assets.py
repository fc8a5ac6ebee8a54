"""Stock, ERP → portal, on a schedule (every 15 minutes by default).

Stock moves constantly; pushing every movement would spend the portal's rate limit on noise.
So stock goes in scheduled batches: a snapshot of available stock (on hand − allocated) per SKU
and warehouse, compared with what was last pushed, and only the levels that changed are sent,
500 per call. A lag of minutes is the accepted price of staying under the portal's rate limit;
how much lag is too much is ``portal_stock_levels``' freshness policy (``freshness.py``). The
steps are the flows of ``flows/stock_sync.py``.
"""

import dagster as dg
import pandas as pd
from dagster_pandera import pandera_schema_to_dagster_type

from b2b_pipeline.defs.customers.columns import column_schema_metadata
from b2b_pipeline.defs.groups import ERP, PORTAL_SYNC
from b2b_pipeline.defs.inventory.freshness import STOCK_FRESHNESS
from b2b_pipeline.defs.resources import (
    AuditResource,
    ErpResource,
    MappingsResource,
    SparkLayerResource,
)
from b2b_pipeline.domain.schemas.master_data import ErpInventory
from b2b_pipeline.flows import stock_sync


@dg.asset(
    group_name=ERP,
    kinds={"sqlalchemy", "pandas"},
    dagster_type=pandera_schema_to_dagster_type(ErpInventory),
    metadata=column_schema_metadata(ErpInventory),
    description="ERP stock per SKU and warehouse that passed every rule (non-negative, mapped "
    "warehouse, SKU in the catalogue).",
)
def erp_inventory(
    context: dg.AssetExecutionContext,
    erp_products: pd.DataFrame,
    erp: ErpResource,
    audit: AuditResource,
    mappings: MappingsResource,
) -> dg.Output[pd.DataFrame]:
    result = stock_sync.check_erp_inventory(
        erp=erp.gateway,
        audit=audit.store,
        mappings=mappings.mappings,
        run_id=context.run.run_id,
        products=erp_products,
    )
    return dg.Output(
        result.inventory,
        metadata={"dagster/row_count": len(result.inventory), "held_back": result.held_back},
    )


@dg.asset(
    group_name=PORTAL_SYNC,
    kinds={"sparklayer", "duckdb"},
    freshness_policy=STOCK_FRESHNESS,
    description="Available stock in the portal per SKU and stock location; only changed "
    "levels are pushed, and every change is kept as history. Fresh while a stock sync has run "
    "in the last two schedule intervals.",
)
def portal_stock_levels(
    context: dg.AssetExecutionContext,
    erp_inventory: pd.DataFrame,
    sparklayer: SparkLayerResource,
    audit: AuditResource,
    mappings: MappingsResource,
) -> dg.MaterializeResult:
    result = stock_sync.sync_stock_levels(
        portal=sparklayer.client,
        audit=audit.store,
        state=audit.state,
        mappings=mappings.mappings,
        run_id=context.run.run_id,
        inventory=erp_inventory,
    )
    return dg.MaterializeResult(
        metadata={
            "levels": result.levels,
            "changed": result.changed,
            "pushed": result.pushed,
            "unchanged": result.unchanged,
            "refused_by_portal": result.refused_by_portal,
            "stock_calls": result.stock_calls,
            "locations_created": dg.MetadataValue.json(result.locations_created),
        }
    )


inventory_sync_job = dg.define_asset_job(
    "inventory_sync_job",
    selection=dg.AssetSelection.assets("erp_products", erp_inventory, portal_stock_levels),
    description="Available stock to the portal (only changed levels).",
)
