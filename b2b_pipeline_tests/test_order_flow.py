"""Orders, portal → ERP, end to end: the failures merchants pay for, each proved on the real
simulator, the seeded reference ERP and the DuckDB audit file, through the project's own
Dagster jobs and its command line.

Every scenario starts from a portal that the project's own master-data sync filled from the
demo ERP (customers, groups, price lists; run for real once per module and saved, then each test
gets its own copy on its own simulator), places orders as a buyer would, runs
``order_intake_job`` and then looks where a person would:
the ERP's sales orders, the portal purchase, the exception queue and the audit trail. After every
run the conservation promise is checked twice: by the project's own asset check, and directly
(every live portal purchase is exactly one of posted or queued).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from b2b_pipeline.cli.main import cli
from b2b_pipeline.config.mappings import DEFAULT_MAPPINGS_PATH
from b2b_pipeline.connectors.sparklayer.purchases import internal_id, visible_id
from b2b_pipeline.connectors.sparklayer.purchases import purchase_id as pid
from b2b_pipeline.defs.orders.assets import retry_run_config
from b2b_pipeline.domain.pricing import resolve_unit_prices
from b2b_pipeline_tests.harness import Pipeline, save_synced_portal, simulator_from

BRAKE = "BRK-0001"  # an active SKU on every demo price list


# --- a portal filled by a real master-data sync, once per module --------------------------------


@pytest.fixture(scope="module")
def synced_portal_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulator's saved state after the project's price and customer syncs of the demo
    ERP, made once per module (``harness.save_synced_portal``)."""
    return save_synced_portal(tmp_path_factory.mktemp("synced_portal"))


@pytest.fixture
def simulator(synced_portal_state: Path, tmp_path: Path):
    """This module's simulator starts from the synced portal (a private copy per test)."""
    with simulator_from(synced_portal_state, tmp_path) as server:
        yield server


@pytest.fixture(autouse=True)
def _no_dagster_home(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command line records its runs in DAGSTER_HOME when set: not a developer's, here."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)


# --- helpers -----------------------------------------------------------------------------------


def intake(pipeline: Pipeline, purchase_ids: list[str] | None = None):
    """One order intake run; the conservation check must pass after it, and hold directly."""
    config = retry_run_config(purchase_ids) if purchase_ids else None
    result = pipeline.run("order_intake_job", config)
    assert result.success
    assert pipeline.checks(result)["every_live_order_posted_or_queued"] is True
    assert_conserved(pipeline)
    return result


def assert_conserved(pipeline: Pipeline) -> None:
    """Every live portal purchase is exactly one of: posted in the ERP, or in the queue (waiting,
    or closed by a person who ignored it)."""
    live = [
        pid(p)
        for p in pipeline.portal.iter_purchases()
        if p.get("type") == "order" and p.get("calculated_fulfilment_status") != "cancelled"
    ]
    posted = set(pipeline.sales_orders()["external_ref"].astype(str))
    queue = pipeline.audit.exceptions(status=["open", "approved", "ignored"])
    # A refused write-back is about an order already posted: not what holds an order back.
    queue = queue[queue["reason_code"] != "WRITE_BACK_REFUSED"]
    queued = set(queue.loc[queue["entity"] == "order", "entity_key"].astype(str))
    both = [p for p in live if p in posted and p in queued]
    neither = [p for p in live if p not in posted and p not in queued]
    assert not both and not neither, f"posted and queued: {both}; neither: {neither}"


def erp_orders(pipeline: Pipeline, purchase_id: str) -> pd.DataFrame:
    orders = pipeline.sales_orders()
    return orders[orders["external_ref"] == purchase_id]


def order_exception(pipeline: Pipeline, purchase_id: str, status: str = "open") -> dict:
    queue = pipeline.audit.exceptions(status=status)
    mine = queue[(queue["entity"] == "order") & (queue["entity_key"] == purchase_id)]
    assert len(mine) == 1, mine.to_dict("records")
    return mine.iloc[0].to_dict()


def erp_unit_price(pipeline: Pipeline, account: str, sku: str, quantity: int) -> float:
    """What the ERP's own price rule charges this account (the order check's yardstick)."""
    prices = resolve_unit_prices(
        pd.DataFrame(
            {"line_key": [0], "account_code": [account], "sku": [sku], "quantity": [quantity]}
        ),
        pipeline.erp.read_customers(),
        pipeline.erp.read_price_lists(),
        pipeline.erp.read_price_list_items(),
    )
    return float(prices["erp_unit_price"].iloc[0])


def exceptions_cli(*args: str) -> Any:
    """``b2b-pipeline exceptions ...`` in this process, on the same environment variables."""
    result = CliRunner().invoke(cli, ["exceptions", *args], catch_exceptions=False)
    return result


def actions(pipeline: Pipeline, purchase_id: str) -> list[str]:
    return pipeline.audit.events(entity="order", entity_key=purchase_id)["action"].tolist()


# --- the mission's failures, one by one --------------------------------------------------------


NOT_YET_ORDERS = ("quote", "cart", "awaiting_approval", "order_unconfirmed")


def test_quotes_carts_and_unconfirmed_orders_are_never_posted_until_they_become_orders(pipeline):
    waiting = {
        kind: pipeline.order("CUST0001", [{"sku": BRAKE, "quantity": 2}], type=kind)
        for kind in NOT_YET_ORDERS
    }
    intake(pipeline)
    assert pipeline.sales_orders().empty
    assert pipeline.audit.exceptions().empty  # not exceptions: simply not orders yet
    for purchase in waiting.values():
        assert "filtered" in actions(pipeline, pid(purchase))

    # The buyer confirms the quote and the platform confirms the unconfirmed order.
    for kind in ("quote", "order_unconfirmed"):
        pipeline.confirm(pid(waiting[kind]))
    intake(pipeline)
    intake(pipeline)  # the next poll changes nothing
    posted = pipeline.sales_orders()
    assert sorted(posted["external_ref"]) == sorted(
        [pid(waiting["quote"]), pid(waiting["order_unconfirmed"])]
    )
    for kind in ("cart", "awaiting_approval"):
        assert erp_orders(pipeline, pid(waiting[kind])).empty
    for kind in ("quote", "order_unconfirmed"):
        assert actions(pipeline, pid(waiting[kind])).count("posted") == 1


def test_each_payment_method_lands_approved_with_its_b2b_details(pipeline):
    on_account = pipeline.order(
        "CUST0001",
        [{"sku": BRAKE, "quantity": 3}],
        payment_method="on_account",
        customer_reference="PO-ACME-7781",
    )
    invoice = pipeline.order(
        "CUST0002",
        [{"sku": BRAKE, "quantity": 2}],
        payment_method="invoice",
        customer_reference="PO-INV-55",
    )
    card = pipeline.order(
        "CUST0008",  # tax-exempt account
        [{"sku": BRAKE, "quantity": 1}],
        payment_method="platform_upfront",
        customer_reference="PO-CARD-1",
    )

    result = intake(pipeline)
    assert pipeline.checks(result)["no_on_account_order_pending_payment"] is True

    customers = pipeline.erp.read_customers().set_index("account_code")
    for purchase, account, status, method, po in (
        (on_account, "CUST0001", "TO_BE_INVOICED", "on_account", "PO-ACME-7781"),
        (invoice, "CUST0002", "TO_BE_INVOICED", "invoice", "PO-INV-55"),
        (card, "CUST0008", "PAID", "platform_upfront", "PO-CARD-1"),
    ):
        order = erp_orders(pipeline, pid(purchase)).iloc[0]
        assert order["account_code"] == account
        assert order["status"] == status
        assert order["payment_method"] == method
        assert order["po_number"] == po
        assert order["tax_code"] == customers.loc[account, "tax_code"]
        assert order["payment_terms"] == customers.loc[account, "payment_terms"]
        assert float(order["gross_total"]) == float(purchase["calculated_total"]["number"])
        # The buyer sees the ERP order number on the portal purchase.
        written = pipeline.portal.get_purchase(pid(purchase))
        assert internal_id(written) == str(order["order_no"])
        # Written back whole: its type, lines and PO number are as the buyer left them.
        assert written["type"] == "order" and written["packages"] == purchase["packages"]
        assert written["customer_reference"] == po
    exempt = erp_orders(pipeline, pid(card)).iloc[0]
    assert exempt["tax_code"] == "EXEMPT" and float(exempt["tax_total"]) == 0.0
    lines = pipeline.erp.read_sales_order_lines(
        [int(erp_orders(pipeline, pid(on_account)).iloc[0]["order_no"])]
    )
    assert lines[["sku", "quantity"]].values.tolist() == [[BRAKE, 3]]


def test_a_mispriced_order_is_queued_as_pricing_with_both_totals_and_not_posted(pipeline):
    erp_price = erp_unit_price(pipeline, "CUST0001", BRAKE, 4)
    cheap = round(erp_price - 1.25, 2)  # a price edited in the portal, not in the ERP
    purchase = pipeline.order("CUST0001", [{"sku": BRAKE, "quantity": 4, "unit_price": cheap}])

    intake(pipeline)
    assert erp_orders(pipeline, pid(purchase)).empty
    exception = order_exception(pipeline, pid(purchase))
    assert (exception["category"], exception["reason_code"]) == ("PRICING", "PRICE_MISMATCH")
    portal_total = float(purchase["calculated_total"]["number"])
    erp_total = round(erp_price * 4 * 1.2, 2)
    assert f"£{portal_total:,.2f}" in exception["message"]
    assert f"£{erp_total:,.2f}" in exception["message"]
    assert pid(json.loads(exception["payload"])) == pid(purchase)


def test_an_order_from_a_self_registered_company_waits_for_an_account_then_posts(pipeline):
    company = pipeline.register_company("Harbour Fixings Ltd", "buyer@harbourfixings.example")
    assert company["accounting_id"] is None
    # The buyer sees list prices the portal gives an unmapped company; here they match what the
    # account it will be mapped to pays, so once mapped the order passes the price check too.
    unit = erp_unit_price(pipeline, "CUST0001", BRAKE, 2)
    purchase = pipeline.order(
        company["id"],
        [{"sku": BRAKE, "quantity": 2, "unit_price": unit}],
        customer_reference="HF-22",
    )

    intake(pipeline)
    assert erp_orders(pipeline, pid(purchase)).empty
    exception = order_exception(pipeline, pid(purchase))
    assert (exception["category"], exception["reason_code"]) == ("MAPPING", "UNMAPPED_ACCOUNT")
    assert "Harbour Fixings Ltd" in exception["message"]

    result = exceptions_cli(
        "approve", exception["exception_id"], "--account-code", "CUST0001", "--by", "Priya (AM)"
    )
    assert result.exit_code == 0, result.output
    assert "1 resolved" in result.output
    order = erp_orders(pipeline, pid(purchase))
    assert order[["account_code", "po_number", "status"]].values.tolist() == [
        ["CUST0001", "HF-22", "TO_BE_INVOICED"]
    ]
    # The portal company now carries the ERP account code, so its next order maps by itself.
    assert pipeline.portal.get_customer(company["id"], "sparklayer")["accounting_id"] == "CUST0001"
    assert pipeline.audit.exception(exception["exception_id"])["status"] == "resolved"
    decisions = pipeline.audit.events(entity="exception", entity_key=exception["exception_id"])
    approved = decisions[decisions["action"] == "exception_approved"]
    assert "Priya (AM)" in approved["detail"].iloc[0]
    assert_conserved(pipeline)


def test_auto_create_policy_creates_the_erp_account_and_posts_the_order(
    pipeline, tmp_path, monkeypatch
):
    # The shipped mapping file, with the one line operations would change.
    rules = yaml.safe_load(DEFAULT_MAPPINGS_PATH.read_text(encoding="utf-8"))
    rules["unmapped_customer_policy"] = "auto_create"
    mapping_file = tmp_path / "mappings.yaml"
    mapping_file.write_text(yaml.safe_dump(rules))
    monkeypatch.setenv("B2B_MAPPINGS", str(mapping_file))
    company = pipeline.register_company("Northgate Joinery", "orders@northgate.example")
    unit = erp_unit_price(pipeline, "CUST0001", BRAKE, 5)  # auto-created: trade list, STANDARD
    purchase = pipeline.order(company["id"], [{"sku": BRAKE, "quantity": 5, "unit_price": unit}])

    intake(pipeline)
    order = erp_orders(pipeline, pid(purchase))
    assert len(order) == 1
    account = order.iloc[0]["account_code"]
    created = pipeline.erp.read_customers().set_index("account_code").loc[account]
    assert created["name"] == "Northgate Joinery"
    assert (created["payment_terms"], created["tax_code"]) == ("NET30", "STANDARD")
    assert account in pipeline.audit.events(action="account_auto_created")["entity_key"].tolist()
    assert pipeline.audit.exceptions().empty
    # The portal company now carries the new account code, so the customer sync updates it
    # rather than creating a second portal customer for the same account.
    mapped = pipeline.portal.get_customer(company["id"], lookup_by="sparklayer")
    assert mapped["accounting_id"] == account


def test_an_account_on_credit_hold_is_stopped_and_an_override_posts_it_on_hold(pipeline):
    purchase = pipeline.order("CUST0001", [{"sku": BRAKE, "quantity": 1}])
    pipeline.erp.set_credit_hold("CUST0001", True)  # credit control acts before the next poll

    intake(pipeline)
    assert erp_orders(pipeline, pid(purchase)).empty
    exception = order_exception(pipeline, pid(purchase))
    assert (exception["category"], exception["reason_code"]) == ("AUTHORISATION", "ACCOUNT_ON_HOLD")

    refused = exceptions_cli("approve", exception["exception_id"], "--by", "Sam (credit)")
    assert refused.exit_code == 2  # an override must be explicit
    assert erp_orders(pipeline, pid(purchase)).empty

    result = exceptions_cli(
        "approve",
        exception["exception_id"],
        "--post-on-hold",
        "--by",
        "Sam (credit)",
        "--note",
        "agreed with the customer",
    )
    assert result.exit_code == 0, result.output
    order = erp_orders(pipeline, pid(purchase))
    assert order["status"].tolist() == ["ON_HOLD"]  # in the ERP, but the warehouse won't pick it
    assert pipeline.audit.exception(exception["exception_id"])["status"] == "resolved"
    assert_conserved(pipeline)


# --- exactly once: re-polls, reruns and crashes ------------------------------------------------


def test_an_order_seen_in_two_polls_or_rerun_as_a_batch_is_posted_once(pipeline):
    first = pipeline.order("CUST0001", [{"sku": BRAKE, "quantity": 1}], customer_reference="PO-1")
    second = pipeline.order("CUST0005", [{"sku": BRAKE, "quantity": 2}], customer_reference="PO-2")

    intake(pipeline)
    # The write-back of the ERP number changed both purchases in the portal, and the poll looks
    # back a few minutes: the next poll sees them again.
    intake(pipeline)
    # An operator replays the same batch by purchase id.
    result = intake(pipeline, [pid(first), pid(second)])
    assert pipeline.metadata(result, "erp_sales_orders")["already_posted"] == 2
    assert pipeline.metadata(result, "erp_sales_orders")["posted"] == 0

    orders = pipeline.sales_orders()
    assert sorted(orders["external_ref"]) == sorted([pid(first), pid(second)])
    for purchase in (first, second):
        assert actions(pipeline, pid(purchase)).count("posted") == 1
    lines = pipeline.erp.read_sales_order_lines(orders["order_no"].astype(int).tolist())
    assert len(lines) == 2  # one line each, never written twice


CRASH_AFTER_ERP_COMMIT = textwrap.dedent(
    """
    import os, signal
    from b2b_pipeline.connectors.erp.gateway import ErpGateway

    post = ErpGateway.post_sales_orders

    def post_then_die(self, orders, lines):
        result = post(self, orders, lines)  # the ERP transaction has committed here
        if len(result):
            os.kill(os.getpid(), signal.SIGKILL)  # power cut: no cleanup, no handlers
        return result

    ErpGateway.post_sales_orders = post_then_die
    from b2b_pipeline.cli.runner import run_job

    run_job("order_intake_job")
    """
)


def test_a_process_killed_between_the_erp_commit_and_the_cursor_never_duplicates_or_loses(
    pipeline,
):
    purchase = pipeline.order(
        "CUST0001", [{"sku": BRAKE, "quantity": 6}], customer_reference="PO-KILL"
    )

    killed = subprocess.run(
        [sys.executable, "-c", CRASH_AFTER_ERP_COMMIT],
        env=dict(os.environ),
        capture_output=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert len(erp_orders(pipeline, pid(purchase))) == 1  # committed before the kill
    assert pipeline.state.order_cursor().updated_at is None  # ...the cursor never moved
    assert internal_id(pipeline.portal.get_purchase(pid(purchase))) is None

    intake(pipeline)  # the next run sees the order again and finds it in the ERP
    order = erp_orders(pipeline, pid(purchase))
    assert len(order) == 1
    order_no = str(order.iloc[0]["order_no"])
    written = internal_id(pipeline.portal.get_purchase(pid(purchase)))
    assert written == order_no  # the buyer still gets the ERP number
    postings = pipeline.audit.query("SELECT * FROM v_order_postings")
    assert postings[["portal_order_id", "erp_order_no", "account_code"]].values.tolist() == [
        [pid(purchase), order_no, "CUST0001"]
    ]
    assert pipeline.state.order_cursor().purchase_id == pid(purchase)


@pytest.mark.parametrize(
    "crash_point",
    ["track_orders", "advance_order_cursor"],
)
def test_a_crash_while_recording_the_outcome_never_duplicates_or_loses_an_order(
    pipeline, monkeypatch, crash_point
):
    from b2b_pipeline.connectors.sync_state import SyncState

    good = pipeline.order("CUST0001", [{"sku": BRAKE, "quantity": 1}])
    held = pipeline.order("CUST0005", [{"sku": BRAKE, "quantity": 1}])
    pipeline.erp.set_credit_hold("CUST0005", True)  # held after ordering, before the poll

    def crash(*args, **kwargs):  # crash injection only: the process dies at this point
        raise SystemExit(f"crashed in {crash_point}")

    with monkeypatch.context() as patch:
        patch.setattr(SyncState, crash_point, crash)
        crashed = pipeline.run("order_intake_job", raise_on_error=False)
    assert not crashed.success
    assert len(erp_orders(pipeline, pid(good))) == 1  # the ERP commit happened before

    intake(pipeline)
    intake(pipeline)
    assert len(erp_orders(pipeline, pid(good))) == 1
    assert erp_orders(pipeline, pid(held)).empty
    assert order_exception(pipeline, pid(held))["reason_code"] == "ACCOUNT_ON_HOLD"
    assert len(pipeline.audit.exceptions()) == 1  # re-seeing it did not queue it twice


# --- malformed purchases ------------------------------------------------------------------------


def _line(**changes: Any) -> dict:
    money = {"number": "10.62", "currency": "GBP"}
    line = {
        "identifiers": {"sku": BRAKE},
        "name_parent": "Brake pad",
        "quantity": 1,
        "line_total": {
            "total_net": money,
            "total_tax": {"number": "2.12", "currency": "GBP"},
            "total_gross": {"number": "12.74", "currency": "GBP"},
            "discount_net": {"number": "0.00", "currency": "GBP"},
        },
        "tax_lines": [],
    }
    return line | changes


def _purchase(platform_id: str, customer_id: str, **changes: Any) -> dict:
    """A purchase as an integration or a portal app would PUT it (create by platform id)."""
    purchase = {
        "type": "order",
        "purchase_identifiers": {"platform": platform_id},
        "customer_identifiers": {"sparklayer": customer_id},
        "currency_code": "GBP",
        "payment_method": "on_account",
        "customer_reference": f"PO-{platform_id}",
        "dates": {"placed_at": "2026-03-03T09:02:00Z"},
        "packages": [{"identifiers": {}, "line_items": [_line()], "shipments": []}],
        "accounting_files": [],
        "custom_fields": [],
    }
    purchase.update(changes)
    return purchase


def _package(*lines: Any) -> list[dict]:
    return [{"identifiers": {}, "line_items": list(lines), "shipments": []}]


def test_malformed_purchases_are_queued_with_their_payload_and_nothing_is_half_posted(pipeline):
    # What the portal accepts but the ERP cannot take (money the portal would refuse to store
    # is covered by the order rules' own tests, on purchases as the wire could carry them).
    customer = pipeline.portal.get_customer("CUST0001")["id"]
    unit = erp_unit_price(pipeline, "CUST0001", BRAKE, 1)
    assert unit == 10.62  # the fixture purchase above is priced as the ERP prices it
    hostile_company = pipeline.register_company(
        "Evil\u0007Corp\r\nLtd", "buyer@evil.example"
    )  # a name with control characters, as a bot might register it
    pipeline.portal.put_customer(
        {
            **pipeline.portal.get_customer(hostile_company["id"], "sparklayer"),
            "accounting_id": "CUST0002",
        },
        lookup_by="sparklayer",
    )
    malformed = {
        "NO-LINES": _purchase("NO-LINES", customer, packages=_package()),
        "BAD-CURRENCY": _purchase("BAD-CURRENCY", customer, currency_code="XYZ"),
        "BAD-PO": _purchase("BAD-PO", customer, customer_reference="PO-9\x00\r\n; rm -rf /"),
        "BAD-NAME": _purchase("BAD-NAME", hostile_company["id"]),
    }
    created = {
        key: pipeline.portal.put_purchase(body, lookup_by="platform")
        for key, body in malformed.items()
    }
    # Quotes and SQL in a PO number are odd but legitimate text: posted verbatim, harmlessly.
    odd_po = "O'Brien'; DROP TABLE erp_sales_orders;-- <b>"
    fine = pipeline.order("CUST0001", [{"sku": BRAKE, "quantity": 1}], customer_reference=odd_po)

    intake(pipeline)
    assert erp_orders(pipeline, pid(fine))["po_number"].tolist() == [odd_po]
    posted = pipeline.sales_orders()
    assert posted["external_ref"].tolist() == [pid(fine)]  # no malformed order in the ERP
    lines = pipeline.erp.read_sales_order_lines()
    assert set(lines["order_no"]) == set(posted["order_no"])  # and no stray lines
    queue = pipeline.audit.exceptions(status="open").set_index("entity_key")
    expected_field = {
        "NO-LINES": "no line items",
        "BAD-CURRENCY": "currency_code",
        "BAD-PO": "customer_reference",
        "BAD-NAME": "company_name",
    }
    for key, purchase in created.items():
        exception = queue.loc[pid(purchase)]
        assert (exception["category"], exception["reason_code"]) == ("DATA", "MALFORMED_ORDER")
        assert expected_field[key] in exception["message"], exception["message"]
        kept = json.loads(exception["payload"])  # the purchase as received, for the fix
        assert pid(kept) == pid(purchase)
        assert kept["purchase_identifiers"]["platform"] == key
    assert len(queue) == len(created)


# --- the exception queue, as operations use it -------------------------------------------------


def test_exceptions_cli_lists_shows_retries_and_ignores_with_every_decision_audited(pipeline):
    held = pipeline.order("CUST0005", [{"sku": BRAKE, "quantity": 2}], customer_reference="PO-HELD")
    unwanted = pipeline.order(
        "CUST0010", [{"sku": BRAKE, "quantity": 1}], customer_reference="PO-DUP"
    )
    pipeline.erp.set_credit_hold("CUST0005", True)
    pipeline.erp.set_credit_hold("CUST0010", True)
    intake(pipeline)
    held_ex = order_exception(pipeline, pid(held))["exception_id"]
    unwanted_ex = order_exception(pipeline, pid(unwanted))["exception_id"]

    table = exceptions_cli("list")
    assert table.exit_code == 0
    assert held_ex in table.output and "AUTHORISATION" in table.output
    listed = json.loads(exceptions_cli("list", "--format", "json").output)
    assert {row["exception_id"] for row in listed} == {held_ex, unwanted_ex}
    assert {row["reason_code"] for row in listed} == {"ACCOUNT_ON_HOLD"}
    shown = exceptions_cli("show", held_ex)
    assert shown.exit_code == 0
    assert "PO-HELD" in shown.output  # the order as received
    assert exceptions_cli("show", "EX-999999").exit_code == 2

    # Credit control releases the hold in the ERP; a retry posts the order and closes the item.
    pipeline.erp.set_credit_hold("CUST0005", False)
    retried = exceptions_cli("retry", held_ex)
    assert retried.exit_code == 0, retried.output
    assert "1 resolved" in retried.output
    assert erp_orders(pipeline, pid(held))["status"].tolist() == ["TO_BE_INVOICED"]
    assert pipeline.audit.exception(held_ex)["status"] == "resolved"
    posted_already = exceptions_cli("ignore", held_ex, "--by", "Jo (ops)", "--note", "oops")
    assert posted_already.exit_code == 2  # its order is in the ERP: nothing left to ignore

    # The customer cancelled by phone: nothing to post, the decision is kept with who and why.
    ignored = exceptions_cli(
        "ignore", unwanted_ex, "--by", "Jo (ops)", "--note", "customer cancelled by phone"
    )
    assert ignored.exit_code == 0, ignored.output
    record = pipeline.audit.exception(unwanted_ex)
    assert (record["status"], record["resolved_by"]) == ("ignored", "Jo (ops)")
    assert erp_orders(pipeline, pid(unwanted)).empty

    still_open = json.loads(exceptions_cli("list", "--format", "json").output)
    assert still_open == []
    history = pipeline.audit.events(entity="exception")
    decided = history[history["entity_key"].isin([held_ex, unwanted_ex])]
    assert {"exception_opened", "exception_resolved", "exception_ignored"} <= set(decided["action"])
    ignore_event = decided[decided["action"] == "exception_ignored"].iloc[0]
    assert "Jo (ops)" in ignore_event["detail"] and "cancelled by phone" in ignore_event["detail"]
    assert pipeline.audit.verify().ok

    # The hold is released and the purchase changes in the portal: the next poll sees it again
    # but neither posts the ignored order nor queues it again, and conservation still holds.
    pipeline.erp.set_credit_hold("CUST0010", False)
    pipeline.confirm(pid(unwanted))  # any change: the purchase is listed again
    intake(pipeline)
    assert erp_orders(pipeline, pid(unwanted)).empty
    assert pipeline.audit.exception(unwanted_ex)["status"] == "ignored"
    assert len(pipeline.audit.exceptions()) == 2
    assert "ignored_by_decision" in actions(pipeline, pid(unwanted))
    refused = exceptions_cli("retry", unwanted_ex)
    assert refused.exit_code == 2 and "ignored" in refused.output
    assert erp_orders(pipeline, pid(unwanted)).empty


# --- the ERP number written back, and polling while buyers act (contract v2 §5) ----------------

PUT_PURCHASE = "/api/v1/purchases/{lookupBy}/{identifier}"


def test_a_buyers_cancellation_before_the_write_back_is_not_overwritten(pipeline):
    order = pipeline.order("CUST0001", [{"sku": BRAKE, "quantity": 2}])
    # The portal refuses writes for a while: the order is posted, its number waits.
    pipeline.faults(fail_next=[{"method": "PUT", "endpoint": PUT_PURCHASE, "status": 503,
                                "count": 1000}])  # fmt: skip
    intake(pipeline)
    assert len(erp_orders(pipeline, pid(order))) == 1
    assert internal_id(pipeline.portal.get_purchase(pid(order))) is None

    pipeline.cancel(pid(order))  # the buyer cancels in the portal meanwhile
    pipeline.faults()
    intake(pipeline)

    after = pipeline.portal.get_purchase(pid(order))
    order_no = str(erp_orders(pipeline, pid(order)).iloc[0]["order_no"])
    assert internal_id(after) == order_no  # the number is written...
    assert after["calculated_fulfilment_status"] == "cancelled"  # ...and the cancellation kept
    assert after["packages"] == order["packages"] and after["type"] == "order"
    assert len(erp_orders(pipeline, pid(order))) == 1  # posted once, whatever happened


def test_a_write_back_the_portal_refuses_is_an_exception_naming_the_order(pipeline):
    order = pipeline.order("CUST0001", [{"sku": BRAKE, "quantity": 1}])
    pipeline.faults(fail_next=[{"method": "PUT", "endpoint": PUT_PURCHASE, "status": 400,
                                "count": 1}])  # fmt: skip
    intake(pipeline)
    order_no = str(erp_orders(pipeline, pid(order)).iloc[0]["order_no"])
    exception = order_exception(pipeline, pid(order))
    assert (exception["category"], exception["reason_code"]) == ("DATA", "WRITE_BACK_REFUSED")
    assert pid(order) in exception["message"] and order_no in exception["message"]
    assert visible_id(order) in exception["message"]  # the number customer service knows

    intake(pipeline)  # the portal accepts it now: the number is written, the exception closes
    assert internal_id(pipeline.portal.get_purchase(pid(order))) == order_no
    assert pipeline.audit.exception(exception["exception_id"])["status"] == "resolved"
    assert len(erp_orders(pipeline, pid(order))) == 1


@pytest.mark.slow
def test_orders_placed_and_quotes_confirmed_while_the_pipeline_pages_are_posted_once(pipeline):
    import threading

    # Enough purchases for several pages of the newest-first list, none of them orders yet.
    carts = [
        pid(pipeline.order("CUST0001", [{"sku": BRAKE, "quantity": 1}], type="cart"))
        for _ in range(520)
    ]
    quotes = [
        pid(pipeline.order("CUST0002", [{"sku": BRAKE, "quantity": 2}], type="quote"))
        for _ in range(20)
    ]
    placed: list[str] = []
    # Every API call is slow, as over the internet: the run pages while buyers act.
    pipeline.faults(latency_ms=150)

    def buyers() -> None:
        for quote in quotes:
            placed.append(pid(pipeline.order("CUST0001", [{"sku": BRAKE, "quantity": 1}])))
            pipeline.confirm(quote)

    acting = threading.Thread(target=buyers)
    acting.start()
    intake(pipeline)
    acting.join()
    pipeline.faults()
    intake(pipeline)  # the next poll picks up whatever changed during the first one

    posted = pipeline.sales_orders()["external_ref"].astype(str)
    assert sorted(posted) == sorted(placed + quotes)  # none lost...
    assert not posted.duplicated().any()  # ...none twice
    assert set(carts).isdisjoint(posted)
