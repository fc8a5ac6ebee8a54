"""Stock every 15 minutes: fresh enough to sell, light enough for the portal's rate limit.

The interval is :data:`~b2b_pipeline.defs.inventory.freshness.STOCK_SYNC_MINUTES`, the one the
stock's freshness policy is measured against.
"""

import dagster as dg

from b2b_pipeline.defs.inventory.assets import inventory_sync_job
from b2b_pipeline.defs.inventory.freshness import STOCK_SYNC_CRON

inventory_sync_schedule = dg.ScheduleDefinition(
    name="inventory_sync_schedule",
    job=inventory_sync_job,
    cron_schedule=STOCK_SYNC_CRON,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
