"""Orders, portal → ERP: one step that a person can follow in the Dagster UI as three assets.

A buyer places an order in the portal; within a minute it is an ERP sales order, or an
exception that says why it is not, and the buyer sees the ERP order number on the purchase. The
steps of one batch (collect, decide, post, advance the cursor, alert, write back) are one
transaction story (``flows/order_intake.py``), so they run as ONE Dagster step: the multi-asset
``order_intake``, which calls the flow once and reports what it did on each of the assets:

- ``erp_sales_orders``: the approved orders posted (idempotently) and the cursor advanced;
- ``order_exceptions``: the queue's new order entries, and the one alert digest;
- ``portal_order_numbers``: the ERP numbers written back to the portal.

Each run's metadata counts every outcome, so the UI says what happened, not only that a run
happened. The sensor passes the cursor window in the run's typed configuration; an operator's
retry (``b2b-pipeline exceptions retry``) passes the purchase ids instead (``retry_run_config``).
"""

# No ``from __future__ import annotations`` in defs/: Dagster reads the config and resource
# annotations of the decorated functions when it builds the definitions.
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
from pydantic import Field

from b2b_pipeline.defs.groups import ORDERS
from b2b_pipeline.defs.resources import (
    AlertsResource,
    AuditResource,
    ErpResource,
    MappingsResource,
    SparkLayerResource,
)
from b2b_pipeline.flows.order_intake import (
    DEFAULT_LOOKBACK,
    DEFAULT_MAX_ORDERS_PER_RUN,
    IntakeWindow,
    OrderIntakeResult,
    run_order_intake,
)

# The op's name: where a run's configuration goes (``ops: {order_intake: {config: ...}}``).
ORDER_INTAKE_OP = "order_intake"
# The metadata entry of ``erp_sales_orders`` that says more purchases waited than one run takes.
MORE_WAITING = "more_waiting"


class OrderIntakeConfig(dg.Config):
    """Which purchases a run handles: by default, everything new since the durable cursor."""

    updated_gte: str | None = Field(
        default=None,
        description="The window's lower edge, an ISO timestamp (the sensor passes the durable "
        "cursor minus the look-back). Unset: read from the durable cursor. A window may reach "
        "further back than the cursor (a re-scan), never start after it.",
    )
    purchase_ids: list[str] = Field(
        default_factory=list,
        description="An operator's retry: replay exactly these purchases; the cursor stays put.",
    )
    max_orders: int = Field(
        default=DEFAULT_MAX_ORDERS_PER_RUN,
        description="Most purchases one run handles; the sensor starts another run for the rest.",
    )
    lookback_minutes: int = Field(
        default=int(DEFAULT_LOOKBACK.total_seconds() // 60),
        description="How far before the durable cursor a run looks again, for purchases whose "
        "clock was slightly behind others.",
    )

    def window(self) -> IntakeWindow:
        return IntakeWindow(
            updated_gte=_moment(self.updated_gte),
            purchase_ids=tuple(self.purchase_ids),
            lookback=timedelta(minutes=self.lookback_minutes),
            max_orders=self.max_orders,
        )


def _moment(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise dg.Failure(
            f"updated_gte must be an ISO timestamp such as 2026-03-03T09:00:00+00:00, not {text!r}"
        ) from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def intake_run_config(config: OrderIntakeConfig) -> dg.RunConfig:
    """The run configuration of one ``order_intake_job`` run (what the sensor requests)."""
    return dg.RunConfig(ops={ORDER_INTAKE_OP: config})


def retry_run_config(purchase_ids: list[str]) -> dict[str, Any]:
    """The run configuration that replays exactly these purchases (``exceptions retry``)."""
    return {"ops": {ORDER_INTAKE_OP: {"config": {"purchase_ids": list(purchase_ids)}}}}


# Keys, not module-level AssetSpecs: Dagster's module loaders would load a spec as an asset of
# its own, beside the multi-asset that defines it.
ERP_SALES_ORDERS = dg.AssetKey("erp_sales_orders")
# The portal-side conservation check (``conservation.py``), which runs in a job of its own.
PORTAL_CONSERVATION_CHECK = dg.AssetCheckKey(ERP_SALES_ORDERS, "live_portal_orders_accounted_for")
ORDER_EXCEPTIONS = dg.AssetKey("order_exceptions")
PORTAL_ORDER_NUMBERS = dg.AssetKey("portal_order_numbers")


@dg.multi_asset(
    name=ORDER_INTAKE_OP,
    specs=[
        dg.AssetSpec(
            ERP_SALES_ORDERS,
            group_name=ORDERS,
            kinds={"sqlalchemy", "duckdb"},
            # Orders are checked against the accounts and prices the portal shows, so in a full
            # cycle they come after those syncs.
            deps=["portal_customers", "portal_price_lists"],
            description="Portal orders in the ERP. Every purchase new since the durable cursor "
            "is checked against the order rules (live type, account mapping, credit, catalogue "
            "and tax, the ERP's own prices, payment terms); the approved ones are posted with "
            "the portal purchase id as external_ref, so a rerun or a crash never posts twice, "
            "and the cursor moves on only once every order behind it is posted or queued.",
        ),
        dg.AssetSpec(
            ORDER_EXCEPTIONS,
            group_name=ORDERS,
            kinds={"duckdb"},
            deps=[ERP_SALES_ORDERS],
            description="Orders that did not go to the ERP, each in the exception queue with "
            "its category and a reason a person can act on (approve, fix and retry, or "
            "ignore), and one alert digest per run for the new ones.",
        ),
        dg.AssetSpec(
            PORTAL_ORDER_NUMBERS,
            group_name=ORDERS,
            kinds={"sparklayer"},
            deps=[ERP_SALES_ORDERS],
            description="The ERP order number on each posted portal purchase "
            "(purchase_identifiers.internal), so the buyer and customer service quote the "
            "number the warehouse knows. A number the portal did not take yet is written on "
            "the next run.",
        ),
    ],
    description="One order intake batch: collect, decide, post, advance the cursor, alert, "
    "write back (flows/order_intake.py).",
)
def order_intake(
    context: dg.AssetExecutionContext,
    config: OrderIntakeConfig,
    sparklayer: SparkLayerResource,
    erp: ErpResource,
    audit: AuditResource,
    alerts: AlertsResource,
    mappings: MappingsResource,
) -> Iterator[dg.MaterializeResult]:
    result = run_order_intake(
        portal=sparklayer.client,
        erp=erp.gateway,
        audit=audit.store,
        state=audit.state,
        mappings=mappings.mappings,
        alerts=alerts.notifier,
        run_id=context.run.run_id,
        window=config.window(),
    )
    context.log.info("Order batch: %s", result.outcome.counts())
    yield dg.MaterializeResult(asset_key=ERP_SALES_ORDERS, metadata=_sales_order_metadata(result))
    yield dg.MaterializeResult(
        asset_key=ORDER_EXCEPTIONS,
        metadata={
            "new_exceptions": len(result.new_exceptions),
            "new_by_category": dg.MetadataValue.json(result.new_by_category),
            "open_in_queue": result.open_in_queue,
            "alert_delivered_to_webhook": result.alert_delivered_to_webhook,
        },
    )
    write_back = result.write_back
    yield dg.MaterializeResult(
        asset_key=PORTAL_ORDER_NUMBERS,
        metadata={
            "written_back": write_back.written_back,
            "write_back_pending": write_back.write_back_pending,
            "write_back_refused": write_back.write_back_refused,
        },
    )


def _sales_order_metadata(result: OrderIntakeResult) -> dict[str, Any]:
    cursor = result.cursor
    return {
        **result.outcome.counts(),
        "by_type": dg.MetadataValue.json(result.by_type),
        "window_start": result.window_start.isoformat() if result.window_start else "(all)",
        "retry_of": dg.MetadataValue.json(list(result.retry_of)),
        # Read by the sensor: a run that left purchases behind is followed by another at once.
        MORE_WAITING: result.more_waiting,
        "cursor": (
            f"{cursor.updated_at.isoformat()} {cursor.purchase_id}"
            if cursor.updated_at is not None
            else "(none yet)"
        ),
    }


order_intake_job = dg.define_asset_job(
    "order_intake_job",
    # Not the portal-side conservation count: it reads two days of purchases, so it has its
    # own hourly job (``conservation.py``) instead of adding that read to every order run.
    selection=dg.AssetSelection.groups(ORDERS)
    - dg.AssetSelection.checks(PORTAL_CONSERVATION_CHECK),
    description="Collect new portal purchases, validate, post to the ERP, queue exceptions.",
    tags={"dagster/max_retries": 2},
)
