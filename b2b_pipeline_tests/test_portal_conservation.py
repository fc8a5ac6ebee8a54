"""Conservation counted from the portal and the ERP themselves (issue 10, item 3).

The per-run check counts what the pipeline tracked; an order the pipeline moved past without
ever tracking it (the paging loss of finding 1) is invisible there. These tests plant exactly
that (the cursor moved past a live order no run handled) and prove the portal-side count
names it, while posted, queued and not-yet-reached orders all count as accounted for; and that
the count runs in its own hourly job, not in every order run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from b2b_pipeline.config.mappings import load_mappings
from b2b_pipeline.connectors.sparklayer.purchases import purchase_id as pid
from b2b_pipeline.flows.order_intake import DEFAULT_LOOKBACK
from b2b_pipeline.flows.order_promises import order_conservation, portal_conservation
from b2b_pipeline_tests.harness import Pipeline
from b2b_pipeline_tests.test_order_intake_flow import BRAKE, mapped_buyer, priced_order


def count(pipeline: Pipeline):
    return portal_conservation(
        portal=pipeline.portal,
        erp=pipeline.erp,
        audit=pipeline.audit,
        state=pipeline.state,
        mappings=load_mappings(None),
    )


def skip_past(pipeline: Pipeline, purchase: dict, beyond: timedelta = timedelta(0)) -> None:
    """What the paging loss did: the durable cursor moved past a purchase no run handled, by
    more than the intake's look-back (which the next run would read again)."""
    moment = pd.Timestamp(purchase["dates"]["updated_at"]).to_pydatetime()
    pipeline.state.advance_order_cursor(
        moment + DEFAULT_LOOKBACK + timedelta(seconds=1) + beyond, "zzzz", "lost-run"
    )


def test_posted_queued_and_unreached_orders_are_accounted_for_and_a_skipped_one_is_lost(
    pipeline: Pipeline,
) -> None:
    company = mapped_buyer(pipeline)
    posted = priced_order(pipeline, company, customer_reference="PO-CONS-1")
    stranger = pipeline.register_company("Unmapped Traders", "buyer@unmapped.example")
    queued = pipeline.order(stranger["id"], [{"sku": BRAKE, "quantity": 1, "unit_price": 9.0}])
    pipeline.order(company, [{"sku": BRAKE, "quantity": 1, "unit_price": 9.0}], type="quote")
    pipeline.order_intake(run_id="cons-1")
    waiting = priced_order(pipeline, company, customer_reference="PO-CONS-2")  # after the run

    found = count(pipeline)
    assert found.holds, found
    assert (found.live_in_portal, found.posted, found.queued, found.not_yet_reached) == (3, 1, 1, 1)
    assert found.lost == []

    # A cursor just past the order, within the look-back: the next run reads it again, so it is
    # not lost (a quote confirmed while a run was reading is in this state for a moment).
    moment = pd.Timestamp(waiting["dates"]["updated_at"]).to_pydatetime()
    pipeline.state.advance_order_cursor(moment + timedelta(seconds=1), "zzzz", "racing-run")
    assert count(pipeline).holds and count(pipeline).not_yet_reached == 1

    # The cursor moves past the waiting order, beyond the look-back, with no run handling it.
    skip_past(pipeline, waiting)
    lost = count(pipeline)
    assert not lost.holds and lost.lost == [pid(waiting)]
    # The pipeline's own count cannot see it: it never tracked that purchase.
    tracked = order_conservation(
        erp=pipeline.erp, audit=pipeline.audit, state=pipeline.state, mappings=load_mappings(None)
    )
    assert tracked.holds and pid(waiting) not in tracked.neither_posted_nor_queued
    assert pid(posted) not in lost.lost and pid(queued) not in lost.lost

    # Outside the window the count looks at, nothing is reported (it runs every hour).
    later = portal_conservation(
        portal=pipeline.portal,
        erp=pipeline.erp,
        audit=pipeline.audit,
        state=pipeline.state,
        mappings=load_mappings(None),
        since=datetime.now(UTC) + timedelta(minutes=5),
    )
    assert later.live_in_portal == 0 and later.holds


def test_the_portal_count_has_its_own_job_and_never_slows_an_order_run(pipeline: Pipeline) -> None:
    company = mapped_buyer(pipeline)
    priced_order(pipeline, company, customer_reference="PO-CONS-3")
    intake = pipeline.run("order_intake_job")
    assert "live_portal_orders_accounted_for" not in pipeline.checks(intake)
    assert pipeline.checks(intake)["every_live_order_posted_or_queued"] is True

    skipped = priced_order(pipeline, company, customer_reference="PO-CONS-4")
    skip_past(pipeline, skipped)
    counted = pipeline.run("order_conservation_job")
    assert pipeline.checks(counted) == {"live_portal_orders_accounted_for": False}
    assert counted.get_asset_materialization_events() == []  # a count, not a materialisation
    evaluation = counted.get_asset_check_evaluations()[0]
    assert evaluation.metadata["lost"].value == [pid(skipped)]
    assert evaluation.metadata["lost_count"].value == 1

    # The runbook's remedy: a re-scan from before the lost order posts it, once.
    since = pd.Timestamp(skipped["dates"]["updated_at"]) - pd.Timedelta(seconds=5)
    rescan = pipeline.run(
        "order_intake_job",
        {"ops": {"order_intake": {"config": {"updated_gte": since.isoformat()}}}},
    )
    assert pipeline.metadata(rescan, "erp_sales_orders")["posted"] == 1
    assert (pipeline.sales_orders()["external_ref"] == pid(skipped)).sum() == 1
    assert pipeline.checks(pipeline.run("order_conservation_job")) == {
        "live_portal_orders_accounted_for": True
    }
