"""The close runs on the 1st at 06:00 UTC for the month just ended; a daily month-to-date run
finds problems while there is still time to fix them."""

from datetime import UTC, datetime

import dagster as dg

from b2b_pipeline.defs.finance.assets import month_end_job
from b2b_pipeline.domain.reconciliation import month_of

# For a monthly partitioned job this targets the last complete month.
month_end_close_schedule = dg.build_schedule_from_partitioned_job(
    month_end_job,
    name="month_end_close_schedule",
    day_of_month=1,
    hour_of_day=6,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)


@dg.schedule(
    job=month_end_job,
    cron_schedule="30 6 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Month-to-date reconciliation every morning.",
)
def month_to_date_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    moment = context.scheduled_execution_time or datetime.now(UTC)
    month = month_of(moment)
    return dg.RunRequest(run_key=f"mtd-{moment:%Y-%m-%d}", partition_key=month)
