"""The order sensor: every 30 s, one run for whatever is new, never one run per order."""

import itertools
import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd

from b2b_pipeline.connectors.sparklayer.purchases import internal_id, purchase_id
from b2b_pipeline.defs.orders.assets import order_intake_job
from b2b_pipeline.defs.orders.intake import purchase_updated_at
from b2b_pipeline.defs.resources import SparkLayerResource

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


def _after(purchase: dict, since: pd.Timestamp | None, seen: dict) -> bool:
    if since is None:
        return True
    return (purchase_updated_at(purchase), purchase_id(purchase) or "") > (
        since,
        seen.get("id", ""),
    )


def _already_numbered(purchase: dict) -> bool:
    return internal_id(purchase) is not None


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


@dg.sensor(
    job=order_intake_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Asks SparkLayer for purchases changed since the last request and starts one "
    "order intake run for the lot. The run itself reads from the durable order cursor, so a "
    "failed run loses nothing: the next one starts where the last success stopped, and a "
    "failed run is followed by another a few minutes later even if nothing new arrives.",
)
def new_portal_orders_sensor(
    context: dg.SensorEvaluationContext, sparklayer: SparkLayerResource
) -> dg.SensorResult | dg.SkipReason:
    in_flight = context.instance.get_run_records(
        dg.RunsFilter(job_name=order_intake_job.name, statuses=IN_FLIGHT), limit=1
    )
    if in_flight:
        return dg.SkipReason("An order intake run is already in progress.")
    seen = json.loads(context.cursor) if context.cursor else {}
    # The cursor is JSON text: turn it back into a time for the API and for the comparison.
    since = pd.Timestamp(seen["updated_at"]) if seen.get("updated_at") else None
    client = sparklayer.get_client()
    try:
        # The list is newest first: one page is enough to know whether there is work; the run
        # pages through all of it.
        first_page = list(
            itertools.islice(
                client.iter_purchases(
                    updated_gte=since.to_pydatetime() if since is not None else None
                ),
                500,
            )
        )
    finally:
        client.close()
    # Entries with no id or time (malformed) start no run of their own; the next run that
    # starts for a real purchase queues them.
    newest = max(
        (
            (purchase_updated_at(p), purchase_id(p) or "")
            for p in first_page
            if purchase_id(p) is not None
        ),
        default=None,
    )
    if newest is None:
        return dg.SkipReason("No new or changed purchases in the portal.")
    key = f"orders-{newest[0].isoformat()}-{newest[1]}"  # derived from the data: dedupes retries
    cursor = json.dumps({"updated_at": newest[0].isoformat(), "id": newest[1]})
    fresh = since is None or newest > (since, seen.get("id", ""))
    if fresh and all(_already_numbered(p) for p in first_page if _after(p, since, seen)):
        # Only purchases that already carry their ERP order number changed: our own write-back
        # (or a later edit of a posted order, which reconciliation compares). No intake needed.
        return dg.SensorResult(
            skip_reason="Only orders already posted to the ERP changed.", cursor=cursor
        )
    if not fresh:
        failed_run = _last_run_failed_long_enough_ago(context)
        if failed_run is None:
            return dg.SkipReason("No new or changed purchases in the portal.")
        # Same data, after a failure: a key of its own (one re-request per failed run).
        key = f"{key}-after-{failed_run[:8]}"
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=key)], cursor=cursor)
