"""The exception actions the command line and the console share (flows/exception_actions.py),
on the real pipeline: simulator over HTTP, SQLite ERP, DuckDB audit file, and retries that run
the project's own Dagster jobs through ``cli.runner.run_retry``.

Each action checks that it fits the exception and says why in words when it does not; each one
that happens is in ``audit_events`` under the acting user; a bulk retry replays every selected
order in one run.
"""

from __future__ import annotations

import json
import socket

import pytest

from b2b_pipeline.cli.runner import run_retry
from b2b_pipeline.connectors.sparklayer.purchases import visible_id
from b2b_pipeline.flows.exception_actions import (
    ActionResult,
    Decision,
    approve_exception,
    find_exception,
    ignore_exception,
    list_exceptions,
    resolve_exception,
    retry_exceptions,
    retry_summary,
)
from b2b_pipeline_tests.harness import Pipeline
from b2b_pipeline_tests.test_month_end import MONTH, TRADE, place, ready_portal


def queued(pipeline: Pipeline, purchase_id: str) -> dict:
    queue = pipeline.audit.exceptions(status=["open", "approved"])
    row = queue[queue["entity_key"] == purchase_id]
    assert len(row) == 1, queue
    return row.iloc[0].to_dict()


def decisions(pipeline: Pipeline, exception_id: str) -> list[tuple[str, dict]]:
    events = pipeline.audit.events(entity="exception", entity_key=exception_id)
    return [(e.action, json.loads(e.detail)) for e in events.itertuples()]


@pytest.fixture
def held_and_mispriced(pipeline: Pipeline) -> dict[str, str]:
    """A mispriced order (PRICING) and an order from an account on credit hold."""
    ready_portal(pipeline)
    mispriced, _ = place(pipeline, TRADE, f"{MONTH}-05T09:00:00Z", unit_price=1.00)
    held, _ = place(pipeline, "CUST0002", f"{MONTH}-05T10:00:00Z")
    pipeline.erp.set_credit_hold("CUST0002", True)
    pipeline.run("order_intake_job")
    return {
        "mispriced": mispriced,
        "mispriced_ex": queued(pipeline, mispriced)["exception_id"],
        "held": held,
        "held_ex": queued(pipeline, held)["exception_id"],
    }


def test_the_queue_names_orders_by_the_number_the_buyer_sees_and_any_case_finds_a_category(
    pipeline: Pipeline, held_and_mispriced: dict[str, str]
) -> None:
    number = visible_id(pipeline.portal.get_purchase(held_and_mispriced["mispriced"]))
    pricing = list_exceptions(pipeline.audit, category="pricing")
    assert pricing["exception_id"].tolist() == [held_and_mispriced["mispriced_ex"]]
    assert pricing["order_number"].tolist() == [number]
    assert (pricing["age_hours"] >= 0).all()
    assert len(list_exceptions(pipeline.audit, status="all")) == 2
    # A person may name an exception by its order number, in any case.
    found = find_exception(pipeline.audit, number.lower())
    assert found is not None and found["exception_id"] == held_and_mispriced["mispriced_ex"]


def test_a_decision_that_does_not_fit_the_exception_is_refused_in_words_and_changes_nothing(
    pipeline: Pipeline, held_and_mispriced: dict[str, str]
) -> None:
    held_ex = held_and_mispriced["held_ex"]
    refused = approve_exception(
        pipeline.audit, held_ex, by="j.finance", decision={"accept": "erp_price"}
    )
    assert isinstance(refused, ActionResult)
    assert (refused.ok, refused.refused, refused.status) == (False, True, "open")
    assert refused.message.startswith("Only a pricing difference takes a price decision;")
    assert "AUTHORISATION ACCOUNT_ON_HOLD" in refused.message
    assert "Release the credit hold in the ERP" in refused.message  # what to do instead

    # A pricing difference needs its price decision, and says which two there are.
    undecided = approve_exception(pipeline.audit, held_and_mispriced["mispriced_ex"], by="j")
    assert undecided.refused and "accept erp_price" in undecided.message
    # Nobody named: refused, nothing recorded under an empty name.
    anonymous = approve_exception(
        pipeline.audit, held_and_mispriced["mispriced_ex"], by=" ", decision=Decision("erp_price")
    )
    assert anonymous.refused and "Say who" in anonymous.message
    for exception_id in (held_ex, held_and_mispriced["mispriced_ex"]):
        assert [action for action, _ in decisions(pipeline, exception_id)] == ["exception_opened"]
        assert pipeline.audit.exception(exception_id)["status"] == "open"


def test_approve_then_retry_posts_at_the_chosen_price_each_step_audited_under_its_user(
    pipeline: Pipeline, held_and_mispriced: dict[str, str]
) -> None:
    exception_id = held_and_mispriced["mispriced_ex"]
    number = visible_id(pipeline.portal.get_purchase(held_and_mispriced["mispriced"]))
    approved = approve_exception(
        pipeline.audit,
        exception_id,
        by="j.finance",
        decision={"accept": "erp-price"},
        note="agreed with the customer",
    )
    assert approved.ok and approved.status == "approved"
    assert approved.message == (
        f"Order {number} approved by j.finance: it will be posted at the ERP's price."
    )
    assert approved.decision == {"accept": "erp_price"}

    (result,) = retry_exceptions(pipeline.audit, [exception_id], by="sam.ops", run_job=run_retry)
    assert (result.ok, result.status, result.message) == (
        True,
        "resolved",
        f"Order {number} posted to the ERP.",
    )
    assert result.run_id
    assert list(pipeline.sales_orders()["external_ref"]) == [held_and_mispriced["mispriced"]]

    history = decisions(pipeline, exception_id)
    actions = [action for action, _ in history]
    assert actions[:3] == ["exception_opened", "exception_approved", "exception_retry_requested"]
    assert actions[-1] == "exception_resolved"
    approval = dict(history)["exception_approved"]
    assert (approval["by"], approval["note"]) == ("j.finance", "agreed with the customer")
    retry = dict(history)["exception_retry_requested"]
    assert (retry["by"], retry["job"]) == ("sam.ops", "order_intake_job")
    assert pipeline.audit.verify().ok


def test_a_bulk_retry_after_a_price_list_fix_posts_the_selection_in_one_run(
    pipeline: Pipeline,
) -> None:
    ready_portal(pipeline)
    orders = [
        place(pipeline, TRADE, f"{MONTH}-0{day}T09:00:00Z", unit_price=1.00)[0] for day in (3, 4)
    ]
    pipeline.run("order_intake_job")
    ids = [queued(pipeline, order)["exception_id"] for order in orders]

    # Finance corrects the ERP's price list: the portal's price was the right one.
    pipeline.erp.set_price("PL-TRADE-GBP", "BRK-0001", 1, 1.00)
    results = retry_exceptions(pipeline.audit, ids, by="sam.ops", run_job=run_retry)
    assert [r.exception_id for r in results] == ids
    assert all(r.ok and r.status == "resolved" for r in results), results
    assert len({r.run_id for r in results}) == 1, "one run for the whole selection"
    assert retry_summary(results) == "Retried 2: 2 resolved, 0 still waiting."
    assert sorted(pipeline.sales_orders()["external_ref"]) == sorted(orders)


def test_an_order_still_held_after_its_retry_says_why(
    pipeline: Pipeline, held_and_mispriced: dict[str, str]
) -> None:
    held_ex = held_and_mispriced["held_ex"]  # the hold is not released
    (result,) = retry_exceptions(pipeline.audit, [held_ex], by="sam.ops", run_job=run_retry)
    assert (result.ok, result.refused, result.failed, result.status) == (
        False,
        False,
        False,
        "open",
    )
    assert "is still waiting:" in result.message and "credit hold" in result.message
    assert retry_summary([result]) == "Retried 1: 0 resolved, 1 still waiting."


def test_a_retry_whose_run_cannot_reach_the_portal_says_so_and_changes_nothing(
    pipeline: Pipeline, held_and_mispriced: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline.erp.set_credit_hold("CUST0002", False)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    monkeypatch.setenv("SPARKLAYER_BASE_URL", f"http://127.0.0.1:{closed}")
    held_ex = held_and_mispriced["held_ex"]
    (result,) = retry_exceptions(pipeline.audit, [held_ex], by="sam.ops", run_job=run_retry)
    assert (result.ok, result.failed, result.status) == (False, True, "open")
    assert "the order_intake_job run failed" in result.message and "SparkLayer" in result.message
    assert pipeline.sales_orders().empty


def test_ignore_needs_a_reason_and_a_closed_exception_takes_no_further_action(
    pipeline: Pipeline, held_and_mispriced: dict[str, str]
) -> None:
    held_ex = held_and_mispriced["held_ex"]
    number = visible_id(pipeline.portal.get_purchase(held_and_mispriced["held"]))
    assert ignore_exception(pipeline.audit, held_ex, by="jo.ops", reason="  ").refused
    ignored = ignore_exception(pipeline.audit, held_ex, by="jo.ops", reason="customer cancelled")
    assert ignored.ok and ignored.status == "ignored"
    assert ignored.message == (
        f"Order {number} ignored by jo.ops: customer cancelled. It will not be posted to the ERP."
    )
    ignore_event = dict(decisions(pipeline, held_ex))["exception_ignored"]
    assert (ignore_event["by"], ignore_event["note"]) == ("jo.ops", "customer cancelled")

    again = [
        approve_exception(pipeline.audit, held_ex, by="x", decision={"post_on_hold": True}),
        resolve_exception(pipeline.audit, held_ex, by="x", note="done"),
        *retry_exceptions(pipeline.audit, [held_ex], by="x", run_job=run_retry),
    ]
    for result in again:
        assert result.refused and result.status == "ignored"
        assert f"Order {number} was ignored by jo.ops" in result.message
    unknown = retry_exceptions(pipeline.audit, ["EX-999999"], by="x", run_job=run_retry)
    assert unknown[0].refused and unknown[0].message == "There is no exception EX-999999."


def test_resolve_records_how_it_was_dealt_with_and_replays_nothing(
    pipeline: Pipeline, held_and_mispriced: dict[str, str]
) -> None:
    exception_id = held_and_mispriced["mispriced_ex"]
    assert resolve_exception(pipeline.audit, exception_id, by="j.finance", note="").refused
    resolved = resolve_exception(
        pipeline.audit, exception_id, by="j.finance", note="keyed into the ERP by phone"
    )
    assert resolved.ok and resolved.status == "resolved"
    assert "marked resolved by j.finance: keyed into the ERP by phone" in resolved.message
    record = pipeline.audit.exception(exception_id)
    assert (record["status"], record["resolved_by"]) == ("resolved", "j.finance")
    assert pipeline.sales_orders().empty  # nothing was posted by resolving


def test_an_approved_order_waiting_for_its_retry_reads_as_approved_at_month_end(
    pipeline: Pipeline, held_and_mispriced: dict[str, str]
) -> None:
    exception_id = held_and_mispriced["mispriced_ex"]
    approve_exception(
        pipeline.audit, exception_id, by="j.finance", decision={"accept": "erp_price"}
    )
    pipeline.run("month_end_job", partition_key=MONTH)
    lines = pipeline.audit.reconciliation_lines(MONTH).set_index("portal_order_id")
    line = lines.loc[held_and_mispriced["mispriced"]]
    assert line["outcome"] == "EXCEPTION_OPEN"
    # Not the exception's original advice to "approve with the ERP or the portal price".
    assert line["reason"] == (
        "Held in the exception queue (PRICING PRICE_MISMATCH): approved by j.finance to be "
        f"posted at the ERP's price; it waits for its retry ({exception_id})."
    )
