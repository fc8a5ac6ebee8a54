"""Credit hold and release reach the portal within about a minute of the ERP change."""

from datetime import datetime

import dagster as dg

from b2b_pipeline.defs.customers.assets import customer_sync_job
from b2b_pipeline.defs.resources import ErpResource


@dg.sensor(
    job=customer_sync_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches the ERP's customer records (credit hold, blocked, inactive, terms) "
    "and syncs customers when any changed, so a held buyer is stopped in the portal within "
    "about a minute.",
)
def erp_customer_changes_sensor(
    context: dg.SensorEvaluationContext, erp: ErpResource
) -> dg.SensorResult | dg.SkipReason:
    since = datetime.fromisoformat(context.cursor) if context.cursor else None
    changed = erp.gateway.changed_since("erp_customers", since)
    if changed is None:
        return dg.SkipReason("No ERP customer changed.")
    stamp = changed.isoformat()
    # The run key is the newest change seen: a new change is new work, a repeat is not.
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"erp-customers-{stamp}")], cursor=stamp
    )
