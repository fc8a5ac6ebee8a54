"""Finance: the month-end reconciliation, one partition per month.

The asset is the Dagster face of ``flows.month_end.run_month_end`` (the same reconciliation
``b2b-pipeline reconcile`` and the console run); the check reads the lines it returned.
"""

import dagster as dg

from b2b_pipeline.defs.groups import FINANCE
from b2b_pipeline.defs.resources import (
    AuditResource,
    ErpResource,
    MappingsResource,
    SparkLayerResource,
)
from b2b_pipeline.flows.month_end import FIRST_MONTH, MonthEnd, run_month_end

# end_offset=1 adds the current month, so the daily month-to-date run finds problems before
# the close.
monthly = dg.MonthlyPartitionsDefinition(
    start_date=FIRST_MONTH, fmt="%Y-%m", end_offset=1, timezone="UTC"
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
    sparklayer: SparkLayerResource,
    erp: ErpResource,
    audit: AuditResource,
    mappings: MappingsResource,
) -> dg.MaterializeResult:
    result = run_month_end(
        portal=sparklayer.client,
        erp=erp.gateway,
        audit=audit.store,
        mappings=mappings.mappings,
        month=context.partition_key,
        run_id=context.run.run_id,
    )
    open_items = result.unexplained
    return dg.MaterializeResult(
        value=result,
        metadata={
            "orders_compared": len(result.lines),
            **{outcome.lower(): n for outcome, n in result.outcome_counts.items()},
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
    open_items = month_end_reconciliation.unexplained
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
            "by_outcome": dg.MetadataValue.json({str(k): int(v) for k, v in by_outcome.items()}),
        },
    )


month_end_job = dg.define_asset_job(
    "month_end_job",
    selection=dg.AssetSelection.assets(month_end_reconciliation),
    partitions_def=monthly,
    description="Reconcile one month of orders, portal against ERP.",
)
