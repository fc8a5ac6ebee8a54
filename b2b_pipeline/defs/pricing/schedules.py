"""The nightly full comparison (read the portal's prices back and repair any drift) and the
hourly price probe (ask the portal what buyers would pay, and queue what differs)."""

import dagster as dg

from b2b_pipeline.defs.pricing.assets import price_probe_job, price_sync_job

nightly_price_comparison_schedule = dg.ScheduleDefinition(
    name="nightly_price_comparison_schedule",
    job=price_sync_job,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    run_config={"ops": {"portal_price_lists": {"config": {"full_comparison": True}}}},
)

# Hourly at :20, clear of the quarter-hour customer and stock syncs, so the probe sees the
# portal between syncs (what a buyer would meet) and does not compete with them for the
# portal's rate limit. The defaults of PriceProbeConfig apply.
price_probe_schedule = dg.ScheduleDefinition(
    name="price_probe_schedule",
    job=price_probe_job,
    cron_schedule="20 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
