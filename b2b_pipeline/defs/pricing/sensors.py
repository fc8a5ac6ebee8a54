"""Intra-day price changes reach the portal within minutes (only the changed SKUs)."""

import dagster as dg

from b2b_pipeline.defs.pricing.assets import price_sync_job
from b2b_pipeline.defs.resources import ErpResource


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
    import json
    from datetime import datetime

    seen = json.loads(context.cursor) if context.cursor else {}
    gateway = erp.get_gateway()
    newest = {}
    for table in ("price_lists", "price_list_items", "products"):
        since = datetime.fromisoformat(seen[table]) if seen.get(table) else None
        changed = gateway.changed_since(table, since)
        if changed is not None:
            newest[table] = changed.isoformat()
    if not newest:
        return dg.SkipReason("No ERP price changed.")
    cursor = {**seen, **newest}
    key = "erp-prices-" + "-".join(f"{t}:{cursor.get(t)}" for t in sorted(cursor))
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=key)], cursor=json.dumps(cursor))
