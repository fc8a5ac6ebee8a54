"""The order sensor, evaluated as the Dagster daemon evaluates it, against the real simulator.

``new_portal_orders_sensor`` starts one ``order_intake_job`` run for whatever is new in the
portal, never one run per order; its run key is derived from the data, so the same purchases
never start two runs, and it stands back while a run is already in flight.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import dagster as dg
import pytest

from b2b_pipeline.connectors.sparklayer.purchases import purchase_id as pid
from b2b_pipeline.defs.orders.sensors import new_portal_orders_sensor
from b2b_pipeline.defs.resources import SparkLayerResource
from b2b_pipeline_tests.conftest import CLIENT_ID, CLIENT_SECRET, SITE_ID


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def tick(simulator, instance):
    """Evaluate the sensor once with a cursor, as one daemon tick does."""
    resources = {
        "sparklayer": SparkLayerResource(
            base_url=simulator.url,
            site_id=SITE_ID,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            requests_per_second=1000.0,
        )
    }

    def evaluate(cursor: str | None = None):
        context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
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
