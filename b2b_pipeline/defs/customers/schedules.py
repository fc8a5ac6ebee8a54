"""A full customer sync every 15 minutes catches anything the change sensor could not see
(e.g. a change made directly in the portal)."""

import dagster as dg

from b2b_pipeline.defs.customers.assets import customer_sync_job

customer_sync_schedule = dg.ScheduleDefinition(
    name="customer_sync_schedule",
    job=customer_sync_job,
    cron_schedule="*/15 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
