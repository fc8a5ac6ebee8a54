"""Finance: the month-end reconciliation, one partition per month."""

import dagster as dg

from b2b_pipeline.defs.finance.month_end import MonthEnd, reconcile, unexplained
from b2b_pipeline.defs.groups import FINANCE
from b2b_pipeline.defs.resources import (
    PipelineResource,
)
from b2b_pipeline.domain import reconciliation as rec

# end_offset=1 adds the current month, so the daily month-to-date run finds problems before
# the close.
monthly = dg.MonthlyPartitionsDefinition(
    start_date="2025-01", fmt="%Y-%m", end_offset=1, timezone="UTC"
)


@dg.asset(
    group_name=FINANCE,
    partitions_def=monthly,
    kinds={"duckdb", "pandas"},
    description="Every order of the month compared across the portal and the ERP, one line "
    "each with an outcome and a reason (reconciliation_lines in the audit store).",
)
def month_end_reconciliation(
    context: dg.AssetExecutionContext,
    pipeline: PipelineResource,
) -> dg.MaterializeResult:
    systems = pipeline.open(context.run.run_id)
    result = reconcile(systems, context.partition_key)
    counts = rec.outcome_counts(result.lines)
    open_items = unexplained(result.lines)
    return dg.MaterializeResult(
        value=result,
        metadata={
            "orders_compared": len(result.lines),
            **{outcome.lower(): n for outcome, n in counts.items()},
            "unexplained": open_items.count,
            "unexplained_money": dg.MetadataValue.json(open_items.money),
            "portal_gross": float(result.summary["portal_gross"].sum()),
            "erp_gross": float(result.summary["erp_gross"].sum()),
        },
    )


@dg.asset_check(
    asset=month_end_reconciliation,
    partitions_def=monthly,
    description="Fails when any order is left unexplained: anything other than matched or held "
    "in the exception queue with a known reason. Says how many orders and how much money.",
)
def reconciliation_fully_explained(
    month_end_reconciliation: MonthEnd,
) -> dg.AssetCheckResult:
    open_items = unexplained(month_end_reconciliation.lines)
    money = ", ".join(f"{cur} {amount:,.2f}" for cur, amount in open_items.money.items())
    by_outcome = open_items.lines["outcome"].value_counts().to_dict()
    return dg.AssetCheckResult(
        passed=not open_items,
        description=(
            f"{open_items.count} order(s) unexplained ({money})"
            if open_items
            else "Every order matched or is held in the queue with a reason."
        ),
        metadata={
            "unexplained_orders": open_items.count,
            "money_at_stake": dg.MetadataValue.json(open_items.money),
            "by_outcome": dg.MetadataValue.json({k: int(v) for k, v in by_outcome.items()}),
        },
    )


month_end_job = dg.define_asset_job(
    "month_end_job",
    selection=dg.AssetSelection.assets(month_end_reconciliation),
    partitions_def=monthly,
    description="Reconcile one month of orders, portal against ERP.",
)
