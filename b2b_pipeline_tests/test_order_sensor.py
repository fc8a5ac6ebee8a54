"""The order sensor, evaluated as the Dagster daemon evaluates it, against the real simulator.

``new_portal_orders_sensor`` starts one ``order_intake_job`` run for whatever is new in the
portal, never one run per order; its run key is derived from the data, so the same purchases
never start two runs, and it stands back while a run is already in flight. The run it requests
carries its window (the durable order cursor minus the look-back) in typed run config, and
that run, executed as requested, posts or queues the new orders.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from b2b_pipeline.connectors.sparklayer.purchases import purchase_id as pid
from b2b_pipeline.defs.orders.sensors import new_portal_orders_sensor
from b2b_pipeline.defs.resources import AuditResource, SparkLayerResource
from b2b_pipeline_tests.conftest import CLIENT_ID, CLIENT_SECRET, SITE_ID


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def tick(simulator, instance, tmp_path):
    """Evaluate the sensor once with a cursor, as one daemon tick does."""
    resources = {
        "sparklayer": SparkLayerResource(
            base_url=simulator.url,
            site_id=SITE_ID,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            requests_per_second=1000.0,
        ),
        # The audit file the ``pipeline`` fixture's runs write (the durable order cursor).
        "audit": AuditResource(path=str(tmp_path / "data" / "audit.duckdb")),
    }

    def evaluate(cursor: str | None = None):
        # As the daemon does: the resources are opened for the tick and closed after it.
        with dg.build_sensor_context(
            instance=instance, cursor=cursor, resources=resources
        ) as context:
            return new_portal_orders_sensor(context)

    return evaluate


@pytest.fixture
def buyer(pipeline):
    """A company that orders in the portal (registered there; no master-data sync needed)."""
    company = pipeline.register_company("Quayside Tools", "buyer@quayside.example")

    def place(quantity: int = 1) -> dict:
        return pipeline.order(
            company["id"], [{"sku": "BRK-0001", "quantity": quantity, "unit_price": 10.0}]
        )

    return place


def test_no_purchases_in_the_portal_skips_the_tick(tick):
    result = tick()
    assert isinstance(result, dg.SkipReason)


def test_new_purchases_start_exactly_one_run_keyed_on_the_data(tick, buyer):
    orders = [buyer(q) for q in (1, 2, 3)]

    result = tick()
    assert isinstance(result, dg.SensorResult)
    assert len(result.run_requests) == 1  # one run for the lot, never one per order
    key = result.run_requests[0].run_key
    newest = orders[-1]
    assert pid(newest) in key and key.startswith("orders-")
    # The same purchases seen again give the same key: Dagster starts no second run.
    again = tick()
    assert again.run_requests[0].run_key == key
    assert json.loads(result.cursor)["id"] == pid(newest)


def test_the_cursor_advances_so_only_new_purchases_start_another_run(tick, buyer):
    buyer()
    first = tick()
    assert isinstance(tick(first.cursor), dg.SkipReason)  # nothing new since

    later = buyer(5)
    second = tick(first.cursor)
    assert isinstance(second, dg.SensorResult)
    assert len(second.run_requests) == 1
    assert second.run_requests[0].run_key != first.run_requests[0].run_key
    assert pid(later) in second.run_requests[0].run_key
    assert json.loads(second.cursor)["id"] == pid(later)


def test_a_run_already_in_flight_makes_the_sensor_wait(tick, buyer, instance):
    buyer()
    instance.add_run(
        dg.DagsterRun(
            job_name="order_intake_job",
            run_id=str(uuid.uuid4()),
            status=dg.DagsterRunStatus.STARTED,
        )
    )
    result = tick()
    assert isinstance(result, dg.SkipReason)
    assert "in progress" in str(result.skip_message)


def test_a_failed_run_is_requested_again_later_even_if_no_new_order_arrives(
    tick, buyer, instance, monkeypatch
):
    from b2b_pipeline.defs.orders import sensors

    buyer()
    first = tick()
    failed = str(uuid.uuid4())
    instance.add_run(
        dg.DagsterRun(
            job_name="order_intake_job", run_id=failed, status=dg.DagsterRunStatus.FAILURE
        )
    )
    assert isinstance(tick(first.cursor), dg.SkipReason)  # not straight away: let it recover

    monkeypatch.setattr(sensors, "RETRY_FAILED_RUN_AFTER", timedelta(0))  # ...some time later
    again = tick(first.cursor)
    assert isinstance(again, dg.SensorResult)
    key = again.run_requests[0].run_key
    assert key != first.run_requests[0].run_key and failed[:8] in key
    assert tick(first.cursor).run_requests[0].run_key == key  # one re-request per failed run


def test_the_erp_number_written_back_starts_no_second_run(tick, buyer, pipeline):
    order = buyer(2)
    first = tick()
    assert len(first.run_requests) == 1
    # What the intake run does at its end: the ERP order number goes onto the purchase, which
    # changes it in the portal.
    pipeline.portal.set_internal_identifier(pid(order), "1001")

    after = tick(first.cursor)
    assert not after.run_requests  # our own write-back is no new work
    assert "already posted" in after.skip_reason.skip_message
    assert json.loads(after.cursor)["updated_at"] > json.loads(first.cursor)["updated_at"]

    # A purchase that still needs intake (a new order) does start a run.
    newer = buyer(3)
    assert tick(after.cursor).run_requests[0].run_key.endswith(pid(newer))


def window_of(request: dg.RunRequest) -> dict:
    return request.run_config["ops"]["order_intake"]["config"]


def test_the_run_requested_carries_the_window_from_the_durable_cursor(tick, buyer, pipeline):
    from b2b_pipeline.flows.order_intake import DEFAULT_LOOKBACK

    buyer()
    first = tick()
    # Nothing handled yet: the run reads from the beginning.
    assert window_of(first.run_requests[0]).get("updated_gte") is None
    assert window_of(first.run_requests[0])["purchase_ids"] == []

    pipeline.state.advance_order_cursor(
        datetime(2026, 3, 3, 9, 30, tzinfo=UTC), "a-purchase", "a-run"
    )
    buyer(2)
    second = tick(first.cursor)
    start = datetime.fromisoformat(window_of(second.run_requests[0])["updated_gte"])
    assert start == datetime(2026, 3, 3, 9, 30, tzinfo=UTC) - DEFAULT_LOOKBACK


def test_the_run_the_sensor_requests_handles_the_new_orders_once(tick, buyer, pipeline):
    orders = [buyer(q) for q in (1, 2)]
    request = tick().run_requests[0]
    result = pipeline.run("order_intake_job", request.run_config)
    assert result.success
    # The buyer's company is not mapped to an ERP account yet: both orders wait in the queue.
    queued = pipeline.audit.exceptions(status="open")
    assert sorted(queued["entity_key"]) == sorted(pid(o) for o in orders)
    assert pipeline.metadata(result, "erp_sales_orders")["received"] == 2
    assert pipeline.state.order_cursor().purchase_id == pid(orders[-1])

    later = buyer(3)
    again = tick(json.dumps({"updated_at": None}))  # a sensor that lost its own cursor
    rerun = pipeline.run("order_intake_job", again.run_requests[0].run_config)
    assert rerun.success
    # The window starts at the durable cursor: only the new order is handled, once.
    assert pipeline.metadata(rerun, "erp_sales_orders")["received"] == 1
    assert pid(later) in set(pipeline.audit.exceptions(status="open")["entity_key"])
    assert len(pipeline.audit.exceptions()) == 3


def test_a_run_that_left_a_backlog_is_followed_by_another_without_a_new_order(
    tick, buyer, pipeline, instance
):
    orders = [buyer(q) for q in (1, 2, 3)]
    first = tick()
    job = pipeline.definitions().resolve_job_def("order_intake_job")
    # A run that takes at most two purchases (the default is 5,000) leaves the third behind.
    config = {"ops": {"order_intake": {"config": {"max_orders": 2}}}}
    assert job.execute_in_process(run_config=config, instance=instance).success
    assert len(pipeline.audit.exceptions()) == 2

    follow_up = tick(first.cursor)  # nothing new in the portal since the last tick
    assert isinstance(follow_up, dg.SensorResult) and len(follow_up.run_requests) == 1
    request = follow_up.run_requests[0]
    assert "more-after" in request.run_key
    assert job.execute_in_process(run_config=request.run_config, instance=instance).success
    assert set(pipeline.audit.exceptions()["entity_key"]) == {pid(o) for o in orders}

    # The backlog is gone: the sensor stands back again.
    assert isinstance(tick(follow_up.cursor), dg.SkipReason)
