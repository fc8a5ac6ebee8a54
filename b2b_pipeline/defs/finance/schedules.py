"""The close runs on the 1st at 06:00 UTC for the month just ended; a daily month-to-date run
finds problems while there is still time to fix them."""

from datetime import UTC, datetime

import dagster as dg

from b2b_pipeline.defs.finance.assets import month_end_job
from b2b_pipeline.domain.reconciliation import month_of, previous_month


# Not ``build_schedule_from_partitioned_job``: it targets the job's *last* partition, and the
# partitions end one month ahead (end_offset=1, for the month-to-date run), so on 1 November it
# would reconcile November, a month with no orders yet, and never close October.
@dg.schedule(
    name="month_end_close_schedule",
    job=month_end_job,
    cron_schedule="0 6 1 * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="The month-end close: on the 1st at 06:00 UTC, reconcile the month just ended.",
)
def month_end_close_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    moment = context.scheduled_execution_time or datetime.now(UTC)
    month = previous_month(moment)
    return dg.RunRequest(run_key=f"close-{month}", partition_key=month)


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
