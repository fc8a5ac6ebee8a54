"""Conservation counted from the portal and the ERP themselves, every hour.

The per-run check (``every_live_order_posted_or_queued``) counts the purchases the pipeline
tracked; a purchase it never tracked (one skipped while paging a moving list) is invisible to
it. This check reads the portal's live purchases of the last two days and asks the ERP and the
queue about each (``flows.order_promises.portal_conservation``). It costs a read of those
purchases, so it runs in its own hourly job rather than in every 30-second order run.
"""

# No ``from __future__ import annotations``: Dagster reads the resource annotations.
import dagster as dg

from b2b_pipeline.defs.orders.assets import ERP_SALES_ORDERS, PORTAL_CONSERVATION_CHECK
from b2b_pipeline.defs.resources import (
    AuditResource,
    ErpResource,
    MappingsResource,
    SparkLayerResource,
)
from b2b_pipeline.flows.order_promises import portal_conservation

EXAMPLES = 50


@dg.asset_check(
    asset=ERP_SALES_ORDERS,
    name=PORTAL_CONSERVATION_CHECK.name,
    description="Counted from the portal and the ERP, not the pipeline's tracking: every live "
    "portal order changed in the last two days is in the ERP, held in the exception queue, or "
    "not yet reached by the order cursor. One that is none of these was lost.",
)
def live_portal_orders_accounted_for(
    sparklayer: SparkLayerResource,
    erp: ErpResource,
    audit: AuditResource,
    mappings: MappingsResource,
) -> dg.AssetCheckResult:
    found = portal_conservation(
        portal=sparklayer.client,
        erp=erp.gateway,
        audit=audit.store,
        state=audit.state,
        mappings=mappings.mappings,
    )
    return dg.AssetCheckResult(
        passed=found.holds,
        metadata={
            "since": found.since.isoformat(),
            "live_in_portal": found.live_in_portal,
            "posted": found.posted,
            "queued": found.queued,
            "not_yet_reached": found.not_yet_reached,
            "lost": dg.MetadataValue.json(found.lost[:EXAMPLES]),
            "lost_count": len(found.lost),
            "posted_and_queued": dg.MetadataValue.json(found.posted_and_queued[:EXAMPLES]),
        },
    )


order_conservation_job = dg.define_asset_job(
    "order_conservation_job",
    selection=dg.AssetSelection.checks(PORTAL_CONSERVATION_CHECK),
    description="Count every live portal order of the last two days against the ERP and the "
    "exception queue (the portal-side conservation check alone).",
)

order_conservation_schedule = dg.ScheduleDefinition(
    name="order_conservation_schedule",
    job=order_conservation_job,
    cron_schedule="45 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
