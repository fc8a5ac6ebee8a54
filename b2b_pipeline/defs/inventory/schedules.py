"""Stock every 15 minutes: fresh enough to sell, light enough for the portal's rate limit."""

import dagster as dg

from b2b_pipeline.defs.inventory.assets import inventory_sync_job

inventory_sync_schedule = dg.ScheduleDefinition(
    name="inventory_sync_schedule",
    job=inventory_sync_job,
    cron_schedule="*/15 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
