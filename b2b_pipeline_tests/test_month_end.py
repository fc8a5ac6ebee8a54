"""Month-end reconciliation end to end: orders placed in the portal, posted to the ERP by the
order intake job, then damaged in the ERP the way month-end finds real damage (an order deleted,
an amount edited, a second copy keyed in, an order entered by phone) and reconciled by the
project's own ``month_end_job`` (partition key = the month) and ``b2b-pipeline reconcile``.

Each planted problem must come out with its own outcome; the views finance queries must add up
to the lines; the ``reconciliation_fully_explained`` check must fail saying how many orders and
how much money, and pass when the only difference is one finance approved. Orders on either
side of midnight at a month's end land in their own months, the schedules pick the right month,
and the audit trail the reconciliation rests on loses nothing when two runs write at once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from b2b_pipeline.cli.main import cli
from b2b_pipeline.connectors.sparklayer.purchases import purchase_id as pid
from b2b_pipeline.connectors.sparklayer.purchases import visible_id
from b2b_pipeline_tests.harness import Pipeline

MONTH = "2026-10"
FULL_PRICES = {"ops": {"portal_price_lists": {"config": {"full_comparison": True}}}}
TRADE = "CUST0001"  # trade price list, GBP
WHOLESALE = "CUST0003"  # wholesale price list, GBP
EDIT = 10.00  # what someone added to an ERP order's total by hand
PHONE_ORDER_GROSS = 123.45


def ready_portal(pipeline: Pipeline) -> None:
    """Price lists, then customers pointed at them: buyers can order at the ERP's prices."""
    pipeline.run("price_sync_job", FULL_PRICES)
    pipeline.run("customer_sync_job")


def place(pipeline: Pipeline, account: str, placed_at: str, *, unit_price: float | None = None):
    line = {"sku": "BRK-0001", "quantity": 2}
    if unit_price is not None:
        line["unit_price"] = unit_price
    order = pipeline.order(
        account, [line], placed_at=placed_at, customer_reference=f"PO-{placed_at[:10]}"
    )
    return pid(order), float(order["calculated_total"]["number"])


def erp_engine(pipeline: Pipeline) -> sa.Engine:
    """The ERP's own database, for the edits people make behind the integration's back."""
    return sa.create_engine(f"sqlite:///{pipeline.data_dir / 'erp.sqlite'}")


@dataclass
class PlantedMonth:
    clean: list[str]
    deleted: str
    edited: str
    duplicated: str
    duplicate_order_no: int
    held: str
    wholesale: str
    phone_order_no: int
    portal_gross: dict[str, float]  # portal order id -> checkout total


def plant_month(pipeline: Pipeline) -> PlantedMonth:
    """Orders of October 2026 through the real pipeline, then the ERP damaged by hand."""
    ready_portal(pipeline)
    gross: dict[str, float] = {}

    def order(account: str, day: int, **kwargs) -> str:
        purchase_id, total = place(pipeline, account, f"{MONTH}-{day:02d}T10:00:00Z", **kwargs)
        gross[purchase_id] = total
        return purchase_id

    clean = [order(TRADE, 2), order(TRADE, 5)]
    deleted, edited, duplicated = order(TRADE, 8), order(TRADE, 12), order(TRADE, 15)
    held = order(TRADE, 20, unit_price=1.00)  # mispriced: queued as a PRICING exception
    wholesale = order(WHOLESALE, 22)
    pipeline.run("order_intake_job")

    posted = pipeline.sales_orders().set_index("external_ref")
    assert set(posted.index) == set(gross) - {held}, "every order but the mispriced one posted"
    with erp_engine(pipeline).begin() as conn:
        gone = int(posted.loc[deleted, "order_no"])
        conn.execute(sa.text("DELETE FROM erp_sales_order_lines WHERE order_no = :n"), {"n": gone})
        conn.execute(sa.text("DELETE FROM erp_sales_orders WHERE order_no = :n"), {"n": gone})
        conn.execute(
            sa.text(
                "UPDATE erp_sales_orders SET gross_total = gross_total + :e WHERE order_no = :n"
            ),
            {"e": EDIT, "n": int(posted.loc[edited, "order_no"])},
        )
        copy = """
            INSERT INTO erp_sales_orders (external_ref, account_code, po_number, order_date,
                status, payment_method, payment_terms, tax_code, currency, net_total, tax_total,
                gross_total, created_at)
            SELECT :ref, {account}, {po}, order_date, status, payment_method, payment_terms,
                   tax_code, currency, net_total, tax_total, {gross}, created_at
            FROM erp_sales_orders WHERE external_ref = :source
        """
        # Keyed in a second time, with the portal id and a suffix as its reference.
        conn.execute(
            sa.text(copy.format(account="account_code", po="po_number", gross="gross_total")),
            {"ref": f"{duplicated}-2", "source": duplicated},
        )
        # Taken by phone and entered straight into the ERP: no portal order at all.
        conn.execute(
            sa.text(copy.format(account=":account", po="'TEL-77'", gross=":gross")),
            {
                "ref": "PHONE-77",
                "source": wholesale,
                "account": WHOLESALE,
                "gross": PHONE_ORDER_GROSS,
            },
        )
        numbers = dict(
            conn.execute(
                sa.text(
                    "SELECT external_ref, order_no FROM erp_sales_orders WHERE external_ref "
                    "IN (:a, 'PHONE-77')"
                ),
                {"a": f"{duplicated}-2"},
            ).all()
        )
    return PlantedMonth(
        clean=clean,
        deleted=deleted,
        edited=edited,
        duplicated=duplicated,
        duplicate_order_no=numbers[f"{duplicated}-2"],
        held=held,
        wholesale=wholesale,
        phone_order_no=numbers["PHONE-77"],
        portal_gross=gross,
    )


def outcomes(lines: pd.DataFrame) -> dict[tuple[str | None, int | None], str]:
    """(portal order id, ERP order number) -> outcome, as the lines say."""

    def number(value) -> int | None:
        return None if pd.isna(value) else int(value)

    def order_id(value) -> str | None:
        return None if pd.isna(value) else str(value)

    return {
        (order_id(row.portal_order_id), number(row.erp_order_no)): row.outcome
        for row in lines.itertuples()
    }


def check_result(result: dg.ExecuteInProcessResult, name: str):
    evaluations = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    assert len(evaluations) == 1, f"{name} ran {len(evaluations)} times"
    return evaluations[0]


def test_each_planted_discrepancy_gets_its_own_outcome_and_the_check_says_orders_and_money(
    pipeline: Pipeline,
) -> None:
    month = plant_month(pipeline)
    erp = pipeline.sales_orders().set_index("external_ref")
    number = {ref: int(no) for ref, no in erp["order_no"].items()}

    result = pipeline.run("month_end_job", partition_key=MONTH, raise_on_error=False)
    assert result.success, "finding differences is the job's purpose, not a failure"

    expected = {
        (month.clean[0], number[month.clean[0]]): "MATCHED",
        (month.clean[1], number[month.clean[1]]): "MATCHED",
        (month.wholesale, number[month.wholesale]): "MATCHED",
        (month.duplicated, number[month.duplicated]): "MATCHED",
        (month.deleted, None): "MISSING_IN_ERP",
        (month.edited, number[month.edited]): "AMOUNT_MISMATCH",
        (month.duplicated, month.duplicate_order_no): "DUPLICATE_IN_ERP",
        (None, month.phone_order_no): "MISSING_IN_PORTAL",
        (month.held, None): "EXCEPTION_OPEN",
    }
    stored = pipeline.audit.reconciliation_lines(MONTH)
    assert outcomes(stored) == expected
    # The audit trail says how many lines the close filed (not how many kinds of outcome).
    filed = pipeline.audit.events(entity="reconciliation", action="reconciled").iloc[-1]
    assert json.loads(filed["detail"])["lines"] == len(stored)
    # ERP order numbers are stored as written on the invoice: "12", not "12.0".
    assert set(stored["erp_order_no"].dropna()) == {str(n) for _, n in expected if n}

    by_outcome = stored.set_index("outcome")["reason"]
    assert "Held in the exception queue (PRICING PRICE_MISMATCH)" in by_outcome["EXCEPTION_OPEN"]
    assert (
        "totals" in by_outcome["AMOUNT_MISMATCH"] and f"{EDIT:.2f}" in by_outcome["AMOUNT_MISMATCH"]
    )
    assert f"'{month.duplicated}-2'" in by_outcome["DUPLICATE_IN_ERP"]
    assert "PHONE-77" in by_outcome["MISSING_IN_PORTAL"]

    metadata = pipeline.metadata(result, "month_end_reconciliation")
    assert metadata["orders_compared"] == len(expected)
    assert metadata["unexplained"] == 4

    # The money at stake: the deleted order, the hand edit, the copy and the phone order.
    duplicate_gross = month.portal_gross[month.duplicated]
    at_stake = round(
        month.portal_gross[month.deleted] + EDIT + duplicate_gross + PHONE_ORDER_GROSS, 2
    )
    check = check_result(result, "reconciliation_fully_explained")
    assert not check.passed
    assert check.description == f"4 order(s) unexplained (GBP {at_stake:,.2f})"
    assert check.metadata["unexplained_orders"].value == 4
    assert check.metadata["money_at_stake"].value == {"GBP": pytest.approx(at_stake)}
    assert check.metadata["by_outcome"].value == {
        "MISSING_IN_ERP": 1,
        "AMOUNT_MISMATCH": 1,
        "DUPLICATE_IN_ERP": 1,
        "MISSING_IN_PORTAL": 1,
    }

    # The view finance queries agrees with the orders, account by account.
    gross = month.portal_gross
    trade_portal = [*month.clean, month.deleted, month.edited, month.duplicated, month.held]
    trade_erp = sum(gross[o] for o in (*month.clean, month.edited, month.duplicated))
    trade_erp += EDIT + duplicate_gross
    view = pipeline.audit.month_end_reconciliation(MONTH).set_index("account_code")
    trade = view.loc[TRADE]
    assert int(trade["portal_orders"]) == len(trade_portal)  # the copy is not a portal order
    assert int(trade["erp_orders"]) == 5
    assert float(trade["portal_gross"]) == pytest.approx(sum(gross[o] for o in trade_portal))
    assert float(trade["erp_gross"]) == pytest.approx(trade_erp)
    assert [int(trade[c]) for c in ("missing_in_erp", "amount_mismatches", "open_exceptions")] == [
        1,
        1,
        1,
    ]
    wholesale = view.loc[WHOLESALE]
    assert (int(wholesale["portal_orders"]), int(wholesale["erp_orders"])) == (1, 2)
    assert int(wholesale["missing_in_portal"]) == 1
    assert float(wholesale["variance"]) == pytest.approx(PHONE_ORDER_GROSS)
    # ... and with the lines: per account, the variance is the sum of the differences.
    differences = stored.groupby("account_code")["difference"].sum().astype(float)
    for account, row in view.iterrows():
        assert float(row["variance"]) == pytest.approx(differences[account])
        assert float(row["variance"]) == pytest.approx(
            float(row["erp_gross"]) - float(row["portal_gross"])
        )

    # The same month through the command line finance uses: same verdicts, exit status 1.
    run = CliRunner().invoke(cli, ["reconcile", "--month", MONTH, "--format", "json"])
    assert run.exit_code == 1, run.output
    assert f"4 order(s) unexplained (GBP {at_stake:,.2f})" in run.stderr
    pack = json.loads(run.stdout)
    assert outcomes(pd.DataFrame(pack["lines"])) == expected
    assert pack["unexplained"] == {"count": 4, "money": {"GBP": pytest.approx(at_stake)}}


@pytest.mark.slow
def test_a_price_difference_finance_approved_is_explained_and_the_month_closes_clean(
    pipeline: Pipeline,
) -> None:
    ready_portal(pipeline)
    matched, matched_gross = place(pipeline, TRADE, f"{MONTH}-03T09:00:00Z")
    mispriced, portal_gross = place(pipeline, TRADE, f"{MONTH}-04T09:00:00Z", unit_price=9.00)
    pipeline.run("order_intake_job")
    queued = pipeline.audit.exceptions(status="open")
    assert list(queued["entity_key"]) == [mispriced]
    exception_id = queued.iloc[0]["exception_id"]

    runner = CliRunner()
    approved = runner.invoke(
        cli,
        ["exceptions", "approve", exception_id, "--by", "j.finance", "--accept", "erp-price"],
    )
    assert approved.exit_code == 0, approved.output
    # A confirmation a person reads, then what the retry did; no Python dict.
    number = visible_id(pipeline.portal.get_purchase(mispriced))
    assert approved.stdout.splitlines()[0] == (
        f"Order {number} approved by j.finance: it will be posted at the ERP's price."
    )
    assert f"Order {number} posted to the ERP." in approved.stdout
    assert "{" not in approved.output
    posted = pipeline.sales_orders().set_index("external_ref")
    erp_gross = float(posted.loc[mispriced, "gross_total"])
    assert erp_gross == pytest.approx(matched_gross), "posted at the ERP's price"
    assert erp_gross != pytest.approx(portal_gross)

    result = pipeline.run("month_end_job", partition_key=MONTH)
    lines = pipeline.audit.reconciliation_lines(MONTH).set_index("portal_order_id")
    assert lines.loc[mispriced, "outcome"] == "AMOUNT_MISMATCH"  # by contract, still a difference
    reason = lines.loc[mispriced, "reason"]
    assert reason.startswith(
        f"Difference approved by j.finance: posted at the ERP price ({exception_id})."
    )
    # The reason matches the state: approved, nothing left to do; not the advice to go and
    # "find who changed the order" that an unexplained difference gets.
    assert reason.endswith("nothing left to do.") and "find who changed" not in reason
    assert f"portal order {number} totals {portal_gross:.2f} GBP" in reason
    assert float(lines.loc[mispriced, "difference"]) == pytest.approx(erp_gross - portal_gross)
    assert lines.loc[matched, "outcome"] == "MATCHED"

    check = check_result(result, "reconciliation_fully_explained")
    assert check.passed, check.description
    assert pipeline.metadata(result, "month_end_reconciliation")["unexplained"] == 0

    clean = runner.invoke(cli, ["reconcile", "--month", MONTH, "--format", "json"])
    assert clean.exit_code == 0, clean.output
    assert "or is a difference finance approved" in clean.stderr
    assert json.loads(clean.stdout)["unexplained"] == {"count": 0, "money": {}}

    # The approval covers the amount that was posted, not a later hand edit of it.
    with erp_engine(pipeline).begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE erp_sales_orders SET gross_total = gross_total + 1 "
                "WHERE external_ref = :ref"
            ),
            {"ref": mispriced},
        )
    edited = runner.invoke(cli, ["reconcile", "--month", MONTH])
    assert edited.exit_code == 1, edited.output
    assert f"1 order(s) unexplained (GBP {erp_gross + 1 - portal_gross:,.2f})" in edited.stderr
    assert "the ERP total has changed since" in " ".join(edited.stdout.split())  # wrapped


def test_an_order_someone_ignored_is_explained_by_who_ignored_it_not_missing_in_erp(
    pipeline: Pipeline,
) -> None:
    """An order ignored in the queue (a test order, say) is not in the ERP by decision: the
    close says who ignored it and why, and it is not an unexplained difference."""
    ready_portal(pipeline)
    ignored, _ = place(pipeline, TRADE, f"{MONTH}-05T09:00:00Z", unit_price=9.00)
    pipeline.run("order_intake_job")
    queued = pipeline.audit.exceptions(status="open")
    assert list(queued["entity_key"]) == [ignored]
    exception_id = queued.iloc[0]["exception_id"]

    runner = CliRunner()
    done = runner.invoke(
        cli,
        ["exceptions", "ignore", exception_id, "--by", "j.ops", "--reason", "test order"],
    )
    assert done.exit_code == 0, done.output

    result = pipeline.run("month_end_job", partition_key=MONTH)
    lines = pipeline.audit.reconciliation_lines(MONTH).set_index("portal_order_id")
    assert lines.loc[ignored, "outcome"] == "EXCEPTION_OPEN"
    reason = lines.loc[ignored, "reason"]
    assert "ignored by j.ops on " in reason and ": test order;" in reason, reason
    assert "it is closed and will not be posted to the ERP" in reason
    assert "not in the exception queue" not in reason
    check = check_result(result, "reconciliation_fully_explained")
    assert check.passed, check.description

    closed = runner.invoke(cli, ["reconcile", "--month", MONTH, "--format", "json"])
    assert closed.exit_code == 0, closed.output
    assert json.loads(closed.stdout)["unexplained"] == {"count": 0, "money": {}}


def test_orders_at_the_last_and_first_second_of_a_month_land_in_their_own_months(
    pipeline: Pipeline,
) -> None:
    ready_portal(pipeline)
    last_second, _ = place(pipeline, TRADE, "2026-09-30T23:59:59Z")
    first_second, _ = place(pipeline, TRADE, "2026-10-01T00:00:00Z")
    pipeline.run("order_intake_job")
    posted = pipeline.sales_orders().set_index("external_ref")
    assert posted.loc[last_second, "order_date"] == pd.Timestamp("2026-09-30T23:59:59Z")
    assert posted.loc[first_second, "order_date"] == pd.Timestamp("2026-10-01T00:00:00Z")

    for month, mine in (("2026-09", last_second), ("2026-10", first_second)):
        result = pipeline.run("month_end_job", partition_key=month)
        lines = pipeline.audit.reconciliation_lines(month)
        assert list(lines["portal_order_id"]) == [mine], month
        assert list(lines["outcome"]) == ["MATCHED"], month
        assert pipeline.checks(result) == {"reconciliation_fully_explained": True}
        view = pipeline.audit.month_end_reconciliation(month)
        assert view[["portal_orders", "erp_orders"]].sum().tolist() == [1, 1], month


@pytest.mark.slow
def test_two_pipeline_runs_at_once_in_two_processes_lose_no_audit_event(
    pipeline: Pipeline,
) -> None:
    ready_portal(pipeline)
    pipeline.run("inventory_sync_job")  # the first stock push is long and not what is proven
    for day in range(1, 5):
        place(pipeline, TRADE, f"{MONTH}-{day:02d}T12:00:00Z")
    before = pipeline.audit.events()
    # A portal answering in 100 ms (as a real one over the internet does) spreads each run's
    # audit writes over seconds, so runs started together really do overlap, however the
    # two process start-ups happen to be scheduled on a busy machine.
    pipeline.faults(latency_ms=100)
    command = [str(Path(sys.executable).with_name("b2b-pipeline")), "run"]
    # Two operators (or a schedule and an operator) starting a full cycle at the same moment,
    # each its own process, against one audit file.
    runs = [
        subprocess.Popen(
            command, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=180) for run in runs]
    for run, (out, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, out + err

    after = pipeline.audit.events()
    new = after[after["seq"] > before["seq"].max()]
    run_ids = set(new["run_id"].dropna())
    assert len(run_ids) == 2, "both runs wrote to the trail"
    # The runs really overlapped: their events interleave in the trail.
    (first, second) = new.groupby("run_id")["seq"].agg(["min", "max"]).itertuples(index=False)
    assert first.min < second.max and second.min < first.max, "the two runs did not overlap"
    # Gapless and chained: nothing lost, nothing interleaved inside a write.
    assert after["seq"].tolist() == list(range(1, len(after) + 1))
    assert CliRunner().invoke(cli, ["audit", "verify"]).exit_code == 0
    # Each order is in the ERP once, posted by one of the runs and found posted by the other.
    orders = pipeline.sales_orders()
    assert len(orders) == 4 and orders["external_ref"].is_unique
    posted = new[new["action"].isin(["posted", "already_posted"])]
    assert set(posted["entity_key"]) == set(orders["external_ref"])


@pytest.mark.parametrize(
    ("moment", "close_month", "to_date_month"),
    [
        (datetime(2026, 11, 1, 6, 0, tzinfo=UTC), "2026-10", "2026-11"),
        (datetime(2027, 1, 1, 6, 0, tzinfo=UTC), "2026-12", "2027-01"),
    ],
)
def test_the_close_reconciles_the_month_just_ended_and_the_daily_run_the_current_one(
    moment: datetime, close_month: str, to_date_month: str
) -> None:
    from b2b_pipeline.definitions import build_definitions

    definitions = build_definitions()
    repository = definitions.get_repository_def()
    close_schedule = definitions.resolve_schedule_def("month_end_close_schedule")
    daily_schedule = definitions.resolve_schedule_def("month_to_date_schedule")
    assert (close_schedule.cron_schedule, close_schedule.execution_timezone) == ("0 6 1 * *", "UTC")
    for schedule in (close_schedule, daily_schedule):
        assert schedule.job_name == "month_end_job"
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING

    with dg.build_schedule_context(
        scheduled_execution_time=moment, repository_def=repository
    ) as context:
        close = close_schedule.evaluate_tick(context).run_requests
    assert [r.partition_key for r in close] == [close_month]

    later = moment.replace(minute=30)
    with dg.build_schedule_context(
        scheduled_execution_time=later, repository_def=repository
    ) as context:
        daily = daily_schedule.evaluate_tick(context).run_requests
    assert [r.partition_key for r in daily] == [to_date_month]
