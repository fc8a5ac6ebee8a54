"""Intra-day price changes reach the portal within minutes (only the changed SKUs)."""

import json

import dagster as dg

from b2b_pipeline.defs.pricing.assets import price_sync_job
from b2b_pipeline.defs.resources import ErpResource
from b2b_pipeline.flows import price_sync


@dg.sensor(
    job=price_sync_job,
    minimum_interval_seconds=120,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches the ERP's price lists and breaks (a deleted break bumps its list) and "
    "pushes what changed, so buyers see a new price within minutes.",
)
def erp_price_changes_sensor(
    context: dg.SensorEvaluationContext, erp: ErpResource
) -> dg.SensorResult | dg.SkipReason:
    seen = json.loads(context.cursor) if context.cursor else {}
    newest = price_sync.erp_price_changes(erp=erp.gateway, seen=seen)
    if not newest:
        return dg.SkipReason("No ERP price changed.")
    cursor = {**seen, **newest}
    # The run key is the newest change per table: new changes are new work, a repeat is not.
    key = "erp-prices-" + "-".join(f"{t}:{cursor.get(t)}" for t in sorted(cursor))
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=key)], cursor=json.dumps(cursor))
