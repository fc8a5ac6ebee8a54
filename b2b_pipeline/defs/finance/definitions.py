"""Finance: month-end reconciliation."""

import dagster as dg

from b2b_pipeline.defs.finance import assets, schedules

defs = dg.Definitions(
    assets=[assets.month_end_reconciliation],
    asset_checks=[assets.reconciliation_fully_explained],
    jobs=[assets.month_end_job],
    schedules=[schedules.month_end_close_schedule, schedules.month_to_date_schedule],
)
