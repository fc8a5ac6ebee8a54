"""The nightly full comparison: read the portal's prices back and repair any drift."""

import dagster as dg

from b2b_pipeline.defs.pricing.assets import price_sync_job

nightly_price_comparison_schedule = dg.ScheduleDefinition(
    name="nightly_price_comparison_schedule",
    job=price_sync_job,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    run_config={"ops": {"portal_price_lists": {"config": {"full_comparison": True}}}},
)
