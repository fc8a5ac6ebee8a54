"""Orders, portal → ERP, as four assets a person can follow in the Dagster UI.

``portal_orders`` (the purchases as received) → ``validated_orders`` (every order rule applied) →
``erp_sales_orders`` (posted, idempotently, and the cursor advanced) → ``order_exceptions`` (the
queue's new entries and the alert digest), plus ``portal_order_numbers`` (ERP numbers written
back to the portal). Each run's metadata counts every outcome, so the UI says what happened,
not only that a run happened.
"""

import json

import dagster as dg
import pandas as pd
from pydantic import Field

from b2b_pipeline.defs.groups import ORDERS
from b2b_pipeline.defs.orders import intake
from b2b_pipeline.defs.resources import (
    AlertsResource,
    AuditResource,
    PipelineResource,
)


class OrderIntakeConfig(dg.Config):
    """Which purchases a run handles: by default, everything new since the durable cursor."""

    # An operator's retry: replay exactly these purchases.
    purchase_ids: list[str] = Field(default_factory=list)
    lookback_minutes: int = 5
    max_orders: int = intake.DEFAULT_MAX_ORDERS_PER_RUN


@dg.asset(
    group_name=ORDERS,
    kinds={"sparklayer", "pandas"},
    # Orders are checked against the accounts and prices the portal shows, so in a full cycle
    # they come after those syncs.
    deps=["portal_customers", "portal_price_lists"],
    description="Portal purchases not yet handled, exactly as SparkLayer sent them.",
)
def portal_orders(
    context: dg.AssetExecutionContext,
    config: OrderIntakeConfig,
    pipeline: PipelineResource,
) -> dg.MaterializeResult:
    from datetime import timedelta

    systems = pipeline.open(context.run.run_id)
    purchases = intake.collect_purchases(
        systems,
        purchase_ids=config.purchase_ids or None,
        lookback=timedelta(minutes=config.lookback_minutes),
        max_orders=config.max_orders,
    )
    frame = pd.DataFrame(
        {
            "portal_order_id": [str(p.get("id")) for p in purchases],
            "status": [p.get("status") for p in purchases],
            "updated_at": [intake.purchase_updated_at(p) for p in purchases],
            "payload": [json.dumps(p, default=str) for p in purchases],
        }
    )
    by_status = frame["status"].fillna("(none)").value_counts().to_dict()
    return dg.MaterializeResult(
        value=frame,
        metadata={
            "purchases": len(frame),
            "by_status": dg.MetadataValue.json({str(k): int(v) for k, v in by_status.items()}),
            "retry_of": dg.MetadataValue.json(config.purchase_ids),
        },
    )


@dg.asset(
    group_name=ORDERS,
    kinds={"pandas"},
    description="Every order rule applied: live status, account mapping, authorisation, "
    "catalogue and tax, pricing against the ERP, payment mapping.",
)
def validated_orders(
    context: dg.AssetExecutionContext,
    portal_orders: pd.DataFrame,
    pipeline: PipelineResource,
) -> dg.MaterializeResult:
    systems = pipeline.open(context.run.run_id)
    purchases = [json.loads(p) for p in portal_orders["payload"]]
    if not purchases:
        return dg.MaterializeResult(value=None, metadata={"orders": 0})
    batch = intake.validate_purchases(systems, purchases)
    counts = batch.decisions.counts()
    counts["malformed"] = len(batch.normalised.malformed)
    return dg.MaterializeResult(
        value=batch,
        metadata={"orders": len(purchases), **{k: int(v) for k, v in counts.items()}},
    )


@dg.asset(
    group_name=ORDERS,
    kinds={"sqlalchemy", "duckdb"},
    description="Approved orders posted to the ERP (external_ref = portal purchase id, so a "
    "rerun never posts twice), exceptions queued, and the order cursor advanced.",
)
def erp_sales_orders(
    context: dg.AssetExecutionContext,
    validated_orders,
    pipeline: PipelineResource,
) -> dg.MaterializeResult:
    systems = pipeline.open(context.run.run_id)
    if validated_orders is None:
        return dg.MaterializeResult(value=intake.OrderOutcome(), metadata={"received": 0})
    outcome = intake.apply_decisions(systems, validated_orders)
    retry = bool(
        context.run.run_config.get("ops", {})
        .get("portal_orders", {})
        .get("config", {})
        .get("purchase_ids")
    )
    if not retry:  # an operator's retry of old purchases must not move the cursor back or on
        intake.advance_cursor(systems, validated_orders.purchases)
    context.log.info("Order batch: %s", outcome.counts)
    return dg.MaterializeResult(
        value=outcome,
        metadata={k: int(v) for k, v in outcome.counts.items()},
    )


@dg.asset(
    group_name=ORDERS,
    kinds={"duckdb"},
    description="The exception queue's new order entries from this run, and one alert digest.",
)
def order_exceptions(
    context: dg.AssetExecutionContext,
    erp_sales_orders: intake.OrderOutcome,
    audit: AuditResource,
    alerts: AlertsResource,
) -> dg.MaterializeResult:
    new = erp_sales_orders.new_exceptions
    store = audit.get_store()
    open_now = store.exceptions(status="open")
    delivery = None
    if not new.empty:
        delivery = alerts.get_notifier().send_digest(new, run_label=f"run {context.run.run_id[:8]}")
        store.record_event(
            "exception",
            "alert_digest",
            "alert_sent" if delivery.sent_to_webhook or not delivery.error else "alert_failed",
            run_id=context.run.run_id,
            detail={
                "exceptions": len(new),
                "webhook": delivery.sent_to_webhook,
                "error": delivery.error,
            },
        )
    by_category = new["category"].value_counts().to_dict() if not new.empty else {}
    return dg.MaterializeResult(
        value=new,
        metadata={
            "new_exceptions": len(new),
            "new_by_category": dg.MetadataValue.json({k: int(v) for k, v in by_category.items()}),
            "open_in_queue": len(open_now),
            "alert_delivered_to_webhook": bool(delivery and delivery.sent_to_webhook),
        },
    )


@dg.asset(
    group_name=ORDERS,
    kinds={"sparklayer"},
    deps=[erp_sales_orders],
    description="ERP order numbers written back to the portal (purchase_identifiers.internal).",
)
def portal_order_numbers(
    context: dg.AssetExecutionContext,
    pipeline: PipelineResource,
) -> dg.MaterializeResult:
    systems = pipeline.open(context.run.run_id)
    counts = intake.write_back_order_numbers(systems)
    return dg.MaterializeResult(metadata=counts)


order_intake_job = dg.define_asset_job(
    "order_intake_job",
    selection=dg.AssetSelection.groups(ORDERS),
    description="Collect new portal purchases, validate, post to the ERP, queue exceptions.",
    tags={"dagster/max_retries": 2},
)
