"""Stock, ERP → portal, on a schedule (every 15 minutes by default).

Stock moves constantly; pushing every movement would spend the portal's rate limit on noise.
So stock goes in scheduled batches: a snapshot of available stock (on hand − allocated) per SKU
and warehouse, compared with what was last pushed, and only the levels that changed are sent,
500 per call. A lag of minutes is the accepted price of staying under the portal's rate limit.
"""

from datetime import UTC, datetime

import dagster as dg
import pandas as pd
from dagster_pandera import pandera_schema_to_dagster_type

from b2b_pipeline.defs.groups import ERP, PORTAL_SYNC
from b2b_pipeline.defs.resources import (
    PipelineResource,
)
from b2b_pipeline.defs.systems import (
    audit_events,
    column_schema_metadata,
    file_exceptions,
    report_sync,
)
from b2b_pipeline.domain import inventory as rules
from b2b_pipeline.domain.exceptions import exception_frame
from b2b_pipeline.domain.schemas.master_data import ErpInventory

# What each step checks in full on every run (so a problem it no longer finds is resolved).
ERP_STOCK_PROBLEMS = ("inventory", frozenset({"INVALID_ERP_RECORD", "UNMAPPED_WAREHOUSE"}))
PORTAL_STOCK_PROBLEMS = ("inventory", frozenset({"PORTAL_REJECTED_RECORD"}))


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
    pipeline: PipelineResource,
) -> dg.Output:
    systems = pipeline.open(context.run.run_id)
    raw = systems.erp.read_inventory()
    clean, problems = rules.validate_inventory(raw, systems.mappings, products=erp_products)
    file_exceptions(systems, problems, clears=ERP_STOCK_PROBLEMS)
    return dg.Output(clean, metadata={"dagster/row_count": len(clean), "held_back": len(problems)})


@dg.asset(
    group_name=PORTAL_SYNC,
    kinds={"sparklayer", "duckdb"},
    description="Available stock in the portal per SKU and stock location; only changed "
    "levels are pushed, and every change is kept as history.",
)
def portal_stock_levels(
    context: dg.AssetExecutionContext,
    erp_inventory: pd.DataFrame,
    pipeline: PipelineResource,
) -> dg.MaterializeResult:
    started = datetime.now(UTC)
    systems = pipeline.open(context.run.run_id)
    portal = systems.portal
    existing = {loc.get("external_id") for loc in portal.list_stock_locations()}
    created = []
    for external_id in sorted(set(systems.mappings.stock_locations.values()) - existing):
        portal.create_stock_location(external_id.title(), external_id)
        created.append(external_id)

    levels = rules.stock_levels(erp_inventory, systems.mappings)
    changes = rules.stock_changes(levels, systems.state.inventory_current())
    result = portal.batch_update_stock(changes.to_dict(orient="records"))
    refused = pd.DataFrame(
        [
            {
                "entity": "inventory",
                "entity_key": f"{r.item.get('sku')}@{r.item.get('stock_location_external_id')}",
                "account_code": None,
                "reason_code": "PORTAL_REJECTED_RECORD",
                "message": f"The portal refused the stock level of {r.item.get('sku')} at "
                f"{r.item.get('stock_location_external_id')}: {r.message}. Check the SKU and "
                "location; the next stock sync sends it again.",
                "payload": None,
            }
            for r in result.rejected
        ]
    )
    refused_keys = {
        (r.item.get("sku"), r.item.get("stock_location_external_id")) for r in result.rejected
    }
    accepted = pd.Series(
        [
            (sku, loc) not in refused_keys
            for sku, loc in zip(changes["sku"], changes["stock_location_external_id"], strict=True)
        ],
        index=changes.index,
        dtype=bool,
    )
    pushed = changes.loc[accepted]
    systems.state.record_stock_pushed(pushed, systems.run_id)
    systems.record(
        audit_events(
            pushed.assign(key=pushed["sku"] + "@" + pushed["stock_location_external_id"]),
            run_id=systems.run_id,
            entity="inventory",
            key="key",
            action="pushed",
            detail_columns=["stock_level"],
        )
    )
    refused_frame = exception_frame(refused) if len(refused) else exception_frame()
    file_exceptions(systems, refused_frame, clears=PORTAL_STOCK_PROBLEMS)
    report_sync(
        systems,
        "inventory",
        started_at=started,
        records_failed=len(refused),
        errors=refused_frame if len(refused) else None,
        entities=("inventory", "product"),
    )
    return dg.MaterializeResult(
        metadata={
            "levels": len(levels),
            "changed": len(changes),
            "pushed": len(pushed),
            "unchanged": len(levels) - len(changes),
            "refused_by_portal": len(refused),
            "stock_calls": result.calls,
            "locations_created": dg.MetadataValue.json(created),
        }
    )


inventory_sync_job = dg.define_asset_job(
    "inventory_sync_job",
    selection=dg.AssetSelection.assets("erp_products", erp_inventory, portal_stock_levels),
    description="Available stock to the portal (only changed levels).",
)
