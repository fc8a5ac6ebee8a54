"""The order sensor: every 30 s (``B2B_ORDER_SENSOR_SECONDS``), one run for whatever is new,
never one run per order.

A tick reads one page of the portal's newest-first purchase list (``portal_activity``) and the
durable order cursor, and requests one ``order_intake_job`` run whose typed configuration
carries the window (the durable cursor minus the look-back). The run key is derived from the
data (the newest purchase), so the same purchases never start two runs; the sensor's own cursor
only remembers what it saw, the run reads from the durable cursor, so a failed run loses
nothing. With nothing new in the portal it still asks for a run after a failed one (a few
minutes later) and after one that left a backlog behind (``more_waiting``, at once).
"""

# No ``from __future__ import annotations``: Dagster reads the resource annotations.
import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd

from b2b_pipeline.config.settings import order_sensor_seconds
from b2b_pipeline.defs.orders.assets import (
    ERP_SALES_ORDERS,
    MORE_WAITING,
    OrderIntakeConfig,
    intake_run_config,
    order_intake_job,
)
from b2b_pipeline.defs.resources import AuditResource, SparkLayerResource
from b2b_pipeline.flows.order_intake import PurchaseKey, durable_window_start, portal_activity

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
# After a failed intake run (its own retries used up, e.g. the ERP down), ask for one more run
# this long after it ended, even if no new purchase arrives: otherwise orders placed before a
# quiet night would wait for the next order to be posted. Long enough not to hammer a system
# that is down.
RETRY_FAILED_RUN_AFTER = timedelta(minutes=5)


def _seen(cursor: str | None) -> PurchaseKey | None:
    """The newest purchase the sensor saw, from its cursor (JSON text)."""
    seen = json.loads(cursor) if cursor else {}
    if not seen.get("updated_at"):
        return None
    return (pd.Timestamp(seen["updated_at"]), str(seen.get("id", "")))


def _cursor(newest: PurchaseKey) -> str:
    return json.dumps({"updated_at": newest[0].isoformat(), "id": newest[1]})


def _last_run_failed_long_enough_ago(context: dg.SensorEvaluationContext) -> str | None:
    """The id of the latest intake run if it failed at least RETRY_FAILED_RUN_AFTER ago."""
    latest = context.instance.get_run_records(
        dg.RunsFilter(job_name=order_intake_job.name), limit=1
    )
    if not latest or latest[0].dagster_run.status != dg.DagsterRunStatus.FAILURE:
        return None
    record = latest[0]
    ended = record.end_time or record.update_timestamp.timestamp()
    if datetime.now(UTC).timestamp() - ended < RETRY_FAILED_RUN_AFTER.total_seconds():
        return None
    return record.dagster_run.run_id


def _last_run_left_work(context: dg.SensorEvaluationContext) -> str | None:
    """The id of the run that last posted orders if it left purchases behind (a backlog
    larger than one run takes): the rest must not wait for the next new order."""
    latest = context.instance.get_latest_materialization_event(ERP_SALES_ORDERS)
    if latest is None or latest.asset_materialization is None:
        return None
    entry = latest.asset_materialization.metadata.get(MORE_WAITING)
    return latest.run_id if entry is not None and entry.value is True else None


@dg.sensor(
    job=order_intake_job,
    minimum_interval_seconds=order_sensor_seconds(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Asks SparkLayer for purchases changed since the last request and starts one "
    "order intake run for the lot. The run reads from the durable order cursor, so a failed "
    "run loses nothing: the next one starts where the last success stopped, and a failed run "
    "is followed by another a few minutes later even if nothing new arrives.",
)
def new_portal_orders_sensor(
    context: dg.SensorEvaluationContext, sparklayer: SparkLayerResource, audit: AuditResource
) -> dg.SensorResult | dg.SkipReason:
    in_flight = context.instance.get_run_records(
        dg.RunsFilter(job_name=order_intake_job.name, statuses=IN_FLIGHT), limit=1
    )
    if in_flight:
        return dg.SkipReason("An order intake run is already in progress.")
    seen = _seen(context.cursor)
    # The resource opens the client when the tick starts and closes it when it ends.
    activity = portal_activity(sparklayer.client, seen=seen)
    if activity.newest is None:
        return dg.SkipReason("No new or changed purchases in the portal.")
    newest = activity.newest
    key = f"orders-{newest[0].isoformat()}-{newest[1]}"  # derived from the data: dedupes retries
    if activity.fresh and activity.only_numbered:
        # Only purchases that already carry their ERP order number changed: our own write-back
        # (or a later edit of a posted order, which reconciliation compares). No intake needed.
        return dg.SensorResult(
            skip_reason="Only orders already posted to the ERP changed.", cursor=_cursor(newest)
        )
    if not activity.fresh:
        failed_run = _last_run_failed_long_enough_ago(context)
        backlog_run = None if failed_run else _last_run_left_work(context)
        if failed_run is not None:
            # Same data, after a failure: a key of its own (one re-request per failed run).
            key = f"{key}-after-{failed_run[:8]}"
        elif backlog_run is not None:
            # The last run took its maximum and left the rest: one follow-up per such run.
            key = f"{key}-more-after-{backlog_run[:8]}"
        else:
            return dg.SkipReason("No new or changed purchases in the portal.")
    start = durable_window_start(audit.state.order_cursor())
    config = OrderIntakeConfig(updated_gte=start.isoformat() if start is not None else None)
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=key, run_config=intake_run_config(config))],
        cursor=_cursor(newest),
    )
