"""The order intake flow on its own: the real simulator over HTTP, a seeded SQLite ERP and a
DuckDB audit file, called as a plain function, with no Dagster in between.

What the Dagster step adds is only the wiring (resources, run config, metadata): everything a
buyer, the warehouse or finance notices happens here, and is proved here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from b2b_pipeline.connectors.sparklayer.purchases import internal_id
from b2b_pipeline.connectors.sparklayer.purchases import purchase_id as pid
from b2b_pipeline.flows.order_intake import IntakeWindow
from b2b_pipeline_tests.harness import Pipeline

BRAKE = "BRK-0001"


def mapped_buyer(pipeline: Pipeline, account: str = "CUST0001") -> str:
    """A company registered on the portal and mapped to an ERP account (no master-data sync)."""
    company = pipeline.register_company("Harbour Fixings Ltd", f"buyer@{account.lower()}.example")
    pipeline.map_company(company["id"], account)
    return company["id"]


def priced_order(pipeline: Pipeline, company: str, quantity: int = 2, **kwargs) -> dict:
    """An order at the ERP's own price for the account, so the price check passes."""
    unit = pipeline.erp_unit_price("CUST0001", BRAKE, quantity)
    lines = [{"sku": BRAKE, "quantity": quantity, "unit_price": unit}]
    return pipeline.order(company, lines, **kwargs)


def erp_rows(pipeline: Pipeline, purchase_id: str):
    orders = pipeline.sales_orders()
    return orders[orders["external_ref"] == purchase_id]


def test_the_flow_posts_queues_alerts_writes_back_and_advances_the_cursor(pipeline):
    company = mapped_buyer(pipeline)
    good = priced_order(pipeline, company, customer_reference="PO-FLOW-1")
    stranger = pipeline.register_company("Unmapped Traders", "buyer@unmapped.example")
    waiting = pipeline.order(stranger["id"], [{"sku": BRAKE, "quantity": 1, "unit_price": 9.0}])

    result = pipeline.order_intake(run_id="flow-run-1")

    counts = result.outcome.counts()
    assert (counts["received"], counts["posted"], counts["exceptions"]) == (2, 1, 1)
    assert result.by_type == {"order": 2}
    assert result.window_start is None  # nothing handled before: the whole list is read
    order = erp_rows(pipeline, pid(good))
    assert order[["account_code", "po_number", "status"]].values.tolist() == [
        ["CUST0001", "PO-FLOW-1", "TO_BE_INVOICED"]
    ]
    # The buyer sees the ERP number on the purchase.
    assert result.write_back.written_back == 1
    assert internal_id(pipeline.portal.get_purchase(pid(good))) == str(order.iloc[0]["order_no"])
    # The other order waits in the queue with its reason, and people were told once.
    queued = pipeline.audit.exceptions(status="open")
    assert queued[["entity_key", "reason_code"]].values.tolist() == [
        [pid(waiting), "UNMAPPED_ACCOUNT"]
    ]
    assert result.new_by_category == {"MAPPING": 1} and result.open_in_queue == 1
    assert result.alert is not None and not result.alert_delivered_to_webhook  # no webhook set
    assert len(pipeline.audit.events(entity="exception", action="alert_sent")) == 1
    # The cursor stands at the newest purchase handled, and every step is in the audit trail.
    newest = max((good, waiting), key=lambda p: (p["dates"]["updated_at"], pid(p)))
    assert result.cursor.purchase_id == pid(newest)
    actions = set(pipeline.audit.events(entity="order", entity_key=pid(good))["action"])
    assert {"posted", "erp_number_written_back"} <= actions

    # The next poll re-reads the look-back window and changes nothing.
    again = pipeline.order_intake(run_id="flow-run-2")
    assert again.outcome.received == 0
    assert again.new_exceptions.empty and again.alert is None
    assert len(erp_rows(pipeline, pid(good))) == 1
    assert len(pipeline.audit.events(entity="exception", action="alert_sent")) == 1


def test_an_operator_retry_replays_exactly_those_orders_and_leaves_the_cursor(pipeline):
    company = mapped_buyer(pipeline)
    first = priced_order(pipeline, company)
    pipeline.order_intake()
    cursor = pipeline.state.order_cursor()
    second = priced_order(pipeline, company, quantity=3)  # newer, not yet handled

    retried = pipeline.order_intake(IntakeWindow(purchase_ids=(pid(first),)), run_id="retry")

    assert retried.retry_of == (pid(first),)
    assert retried.outcome.received == 1 and retried.outcome.already_posted == 1
    assert retried.outcome.posted == 0
    assert pipeline.state.order_cursor() == cursor  # neither back nor on
    assert erp_rows(pipeline, pid(second)).empty  # a retry is not a poll
    assert len(erp_rows(pipeline, pid(first))) == 1


def test_a_window_asked_to_start_after_the_cursor_still_handles_every_order_behind_it(pipeline):
    company = mapped_buyer(pipeline)
    priced_order(pipeline, company)
    pipeline.order_intake()
    later = priced_order(pipeline, company, quantity=4)

    # A window from tomorrow would skip ``later`` while the cursor moved past it: the flow
    # reads from the durable cursor instead.
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    result = pipeline.order_intake(IntakeWindow(updated_gte=tomorrow))
    assert result.window_start is not None and result.window_start < tomorrow
    assert len(erp_rows(pipeline, pid(later))) == 1
    assert pipeline.state.order_cursor().purchase_id == pid(later)


def test_a_window_reaching_further_back_re_reads_without_re_posting(pipeline):
    company = mapped_buyer(pipeline)
    order = priced_order(pipeline, company)
    pipeline.order_intake()

    rescan = pipeline.order_intake(IntakeWindow(updated_gte=datetime(2000, 1, 1, tzinfo=UTC)))
    assert rescan.window_start == datetime(2000, 1, 1, tzinfo=UTC)
    assert rescan.outcome.received == 0  # every version there was handled already
    assert len(erp_rows(pipeline, pid(order))) == 1


def test_the_flows_import_without_dagster():
    probe = (
        "import sys\n"
        "import b2b_pipeline.flows.order_intake\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'dagster')\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=dict(os.environ), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def _customer_reads(pipeline: Pipeline) -> dict[str, int]:
    by_endpoint = pipeline.calls()["by_endpoint"]
    return {k: v for k, v in by_endpoint.items() if "/customers" in k and k.startswith("GET")}


def test_a_run_for_one_order_reads_its_customer_not_the_portals_whole_customer_list(pipeline):
    """The merchant's all-day cost: a customer the pipeline saw with an ERP account is not read
    again; one it has not seen is read by id, not by paging 5,000 customers."""
    company = mapped_buyer(pipeline)
    others = [pipeline.register_company(f"Filler {n}", f"f{n}@filler.example") for n in range(3)]
    assert others
    first = priced_order(pipeline, company, customer_reference="PO-COST-1")
    pipeline.reset_calls()
    pipeline.order_intake(run_id="cost-1")
    # Not seen before: read by its id, once; the list of every customer is never paged.
    assert _customer_reads(pipeline) == {"GET /api/v2/customers/{lookupBy}/{identifier}": 1}
    assert len(erp_rows(pipeline, pid(first))) == 1

    second = priced_order(pipeline, company, customer_reference="PO-COST-2")
    pipeline.reset_calls()
    result = pipeline.order_intake(run_id="cost-2")
    # Seen a moment ago with its ERP account: no customer call at all, and the order posted
    # to that account with its ERP number written back (list, write-back read, write-back).
    assert _customer_reads(pipeline) == {}
    assert erp_rows(pipeline, pid(second))["account_code"].tolist() == ["CUST0001"]
    assert result.write_back.written_back == 1
    api = {k: v for k, v in pipeline.calls()["by_endpoint"].items() if "/_sim" not in k}
    assert sum(api.values()) <= 4, api


def test_a_company_seen_without_an_account_is_read_again_so_its_mapping_is_not_missed(pipeline):
    """A company remembered with no ERP account may have been mapped since: its next order is
    decided on the portal's record now, never queued as unmapped from memory."""
    stranger = pipeline.register_company("Late Mapped Ltd", "buyer@late.example")
    waiting = pipeline.order(stranger["id"], [{"sku": BRAKE, "quantity": 2, "unit_price": 9.0}])
    pipeline.order_intake(run_id="unmapped-1")
    queued = pipeline.audit.exceptions(status="open")
    assert queued["entity_key"].tolist() == [pid(waiting)]

    pipeline.map_company(stranger["id"], "CUST0001")  # the account manager maps it in the portal
    fresh = priced_order(pipeline, stranger["id"], customer_reference="PO-LATE")
    pipeline.reset_calls()
    pipeline.order_intake(run_id="unmapped-2")
    assert _customer_reads(pipeline) == {"GET /api/v2/customers/{lookupBy}/{identifier}": 1}
    assert erp_rows(pipeline, pid(fresh))["account_code"].tolist() == ["CUST0001"]


def test_a_purchase_naming_a_hostile_customer_id_never_stops_the_batch(pipeline):
    """Finding of the reliability suite: one purchase whose customer id was 100,000 characters
    made the one-by-one customer lookup a 414 and failed every run. The id is not looked up;
    its order is decided as one from an unknown company, and the real order beside it goes on."""
    import copy

    from b2b_pipeline.flows.portal_customers import portal_customers_for

    company = mapped_buyer(pipeline)
    real = priced_order(pipeline, company, customer_reference="PO-REAL")
    hostile = copy.deepcopy(real)
    hostile["purchase_identifiers"] = {"sparklayer": "hostile-1", "visible": "HX-1"}
    hostile["customer_identifiers"] = {"sparklayer": "y" * 100_000}
    odd = copy.deepcopy(real)
    odd["purchase_identifiers"] = {"sparklayer": "hostile-2", "visible": "HX-2"}
    odd["customer_identifiers"] = {"sparklayer": "no-such-customer"}

    pipeline.reset_calls()
    customers = portal_customers_for(pipeline.portal, pipeline.state, [real, hostile, odd])
    assert customers["id"].tolist() == [company]  # the real buyer, read over HTTP
    reads = _customer_reads(pipeline)
    # Two lookups (the real company, and the plausible id the portal does not know); the
    # 100,000-character id never reached the portal.
    assert reads == {"GET /api/v2/customers/{lookupBy}/{identifier}": 2}, reads
