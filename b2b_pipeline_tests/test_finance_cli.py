"""What finance, audit and operations do at the command line, on the real pipeline:

- ``b2b-pipeline reconcile --month M --format html|csv|json --out F``: the close pack, read back
  the way a person or a spreadsheet would (the HTML parsed, not grepped);
- ``b2b-pipeline audit verify``: an audit file tampered with after real runs is caught, naming the
  row, and an intact one passes;
- ``b2b-pipeline prices``: the price an account saw on a date, after the list changed;
- a month that cannot be reconciled is refused in one line (exit 2), never a traceback.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from click.testing import CliRunner

from b2b_pipeline.cli.main import cli
from b2b_pipeline.connectors.sparklayer.purchases import visible_id
from b2b_pipeline_tests.harness import Pipeline
from b2b_pipeline_tests.test_month_end import (
    EDIT,
    MONTH,
    PHONE_ORDER_GROSS,
    TRADE,
    place,
    plant_month,
    ready_portal,
)


class ClosePackPage(HTMLParser):
    """The tables of the close pack (by class: totals, differences, summary) as lists of cell
    texts, and the chart's bars (their tooltips)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.bar_titles: list[str] = []
        self.svg_labels: list[str] = []
        self.headings: list[str] = []
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._in_bar = self._in_title = self._in_heading = False
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "table":
            self._table = attributes.get("class") or ""
            self.tables[self._table] = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "svg":
            self.svg_labels.append(attributes.get("aria-label") or "")
        elif tag == "rect":
            self._in_bar = True
        elif tag == "title" and self._in_bar:
            self._in_title = True
            self.bar_titles.append("")
        elif tag in ("h1", "h2"):
            self._in_heading = True
            self.headings.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._table = None
        elif tag == "rect":
            self._in_bar = False
        elif tag == "title":
            self._in_title = False
        elif tag in ("h1", "h2"):
            self._in_heading = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._in_title:
            self.bar_titles[-1] += data
        if self._in_heading:
            self.headings[-1] += data


def money(amount: float) -> str:
    return f"{amount:,.2f}"


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env)


@pytest.mark.slow
def test_close_pack_html_csv_and_json_show_the_same_figures_and_every_reason(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    month = plant_month(pipeline)
    gross = month.portal_gross
    portal_total = sum(gross.values())
    erp_total = portal_total - gross[month.deleted] - gross[month.held]
    erp_total += EDIT + gross[month.duplicated] + PHONE_ORDER_GROSS
    at_stake = gross[month.deleted] + EDIT + gross[month.duplicated] + PHONE_ORDER_GROSS

    html_file = tmp_path / "pack" / f"close-pack-{MONTH}.html"
    run = invoke("reconcile", "--month", MONTH, "--format", "html", "--out", str(html_file))
    assert run.exit_code == 1, run.output  # the pack is written, and the month is not clean
    page = ClosePackPage()
    page.feed(html_file.read_text(encoding="utf-8"))

    assert page.headings[0] == "Month-end close pack: October 2026"
    assert page.tables["totals"] == [
        [
            "GBP",
            "7",  # portal orders: six trade, one wholesale; the ERP's copy is not one
            "7",  # ERP orders: four posted trade + the copy, the wholesale one + the phone order
            money(portal_total),
            money(erp_total),
            money(erp_total - portal_total),
            "4",
            money(at_stake),
        ]
    ]
    outcome_counts = {row[0]: int(row[1]) for row in page.tables["outcomes"]}
    assert outcome_counts == {
        "MATCHED": 4,
        "MISSING_IN_ERP": 1,
        "MISSING_IN_PORTAL": 1,
        "AMOUNT_MISMATCH": 1,
        "STATUS_MISMATCH": 0,
        "CUSTOMER_MISMATCH": 0,
        "DUPLICATE_IN_ERP": 1,
        "EXCEPTION_OPEN": 1,
    }

    # Every difference with its reason, exactly as filed in the audit store; unexplained first.
    stored = pipeline.audit.reconciliation_lines(MONTH)
    not_matched = stored[stored["outcome"] != "MATCHED"]
    shown = page.tables["differences"]
    assert sorted((row[0], row[-1]) for row in shown) == sorted(
        (o, " ".join(r.split()))
        for o, r in zip(not_matched["outcome"], not_matched["reason"], strict=True)
    )
    assert [row[0] for row in shown][-1] == "EXCEPTION_OPEN"
    deleted_row = next(row for row in shown if row[0] == "MISSING_IN_ERP")
    # Named by the order number the buyer sees (the portal id is the cell's tooltip).
    deleted_number = visible_id(pipeline.portal.get_purchase(month.deleted))
    assert deleted_row[1] == deleted_number and deleted_row[-2] == money(-gross[month.deleted])

    # The chart: one for GBP, a portal and an ERP bar per day of October, the amounts in the
    # tooltips (the deleted order's day has nothing in the ERP).
    assert page.svg_labels == ["Daily gross in GBP: portal and ERP"]
    assert len(page.bar_titles) == 31 * 2
    assert f"2026-10-08 Portal: {money(gross[month.deleted])} GBP" in page.bar_titles
    assert "2026-10-08 ERP: 0.00 GBP" in page.bar_titles
    assert f"2026-10-22 ERP: {money(gross[month.wholesale] + PHONE_ORDER_GROSS)} GBP" in (
        page.bar_titles
    )

    # The CSV for a spreadsheet: same lines, and a summary adding up to the same totals.
    csv_file = tmp_path / "pack" / "close.csv"
    run = invoke("reconcile", "--month", MONTH, "--format", "csv", "--out", str(csv_file))
    assert run.exit_code == 1, run.output
    with csv_file.open(newline="", encoding="utf-8") as handle:
        lines = list(csv.DictReader(handle))
    assert sorted(line["outcome"] for line in lines) == sorted(stored["outcome"])
    assert sum(float(line["difference"]) for line in lines) == pytest.approx(
        erp_total - portal_total
    )
    summary = pd.read_csv(csv_file.with_name("close-summary.csv"))
    assert summary["portal_gross"].sum() == pytest.approx(portal_total)
    assert summary["erp_gross"].sum() == pytest.approx(erp_total)
    daily = pd.read_csv(csv_file.with_name("close-daily.csv"))
    assert len(daily) == 31 and daily["portal_gross"].sum() == pytest.approx(portal_total)

    # The JSON for a script: the same totals.
    json_file = tmp_path / "pack" / "close.json"
    run = invoke("reconcile", "--month", MONTH, "--format", "json", "--out", str(json_file))
    assert run.exit_code == 1, run.output
    pack = json.loads(json_file.read_text(encoding="utf-8"))
    (totals,) = pack["totals"]
    assert totals["portal_gross"] == pytest.approx(portal_total)
    assert totals["erp_gross"] == pytest.approx(erp_total)
    assert (totals["unexplained_lines"], totals["unexplained_money"]) == (
        4,
        pytest.approx(at_stake),
    )
    assert len(pack["lines"]) == len(stored)


def test_reconcile_on_screen_lists_the_summary_and_each_difference(pipeline: Pipeline) -> None:
    ready_portal(pipeline)
    place(pipeline, TRADE, f"{MONTH}-06T08:00:00Z")
    held, _ = place(pipeline, TRADE, f"{MONTH}-07T08:00:00Z", unit_price=1.00)
    pipeline.run("order_intake_job")

    run = invoke("reconcile", "--month", MONTH, env={"COLUMNS": "110"})
    assert run.exit_code == 0, run.output  # matched, and one held in the queue with a reason
    assert TRADE in run.stdout and "portal_orders" in run.stdout
    assert "Differences (1):" in run.stdout
    # The order is named by the number the buyer sees, not the portal's internal id.
    number = visible_id(pipeline.portal.get_purchase(held))
    assert number and number.startswith("SL-")
    assert "EXCEPTION_OPEN" in run.stdout and number in run.stdout
    assert held not in run.stdout and held[:12] not in run.stdout
    # The reason is wrapped to the terminal, not printed 300 characters wide, and not cut.
    differences = run.stdout.split("Differences (1):", 1)[1]
    assert max(len(line) for line in differences.splitlines()) <= 110
    words = " ".join(differences.split())
    assert "Held in the exception queue (PRICING PRICE_MISMATCH)" in words
    assert "fix the price list and retry." in words  # the end of the reason is there
    assert "-2.40" in run.stdout  # money as on a statement, not -2.4


@pytest.mark.parametrize(
    ("month", "says"),
    [
        ("2026-13", "use YYYY-MM"),
        ("Oct-2026", "use YYYY-MM"),
        ("2024-06", "cannot be reconciled"),
        ("2031-01", "cannot be reconciled"),
    ],
)
def test_reconcile_refuses_a_month_it_cannot_read_in_one_line(month: str, says: str) -> None:
    run = invoke("reconcile", "--month", month)
    assert run.exit_code == 2
    assert says in run.output
    assert "Traceback" not in run.output
    assert run.exception is None or isinstance(run.exception, SystemExit)


def test_audit_verify_catches_an_edited_deleted_or_inserted_row_and_passes_an_intact_trail(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    ready_portal(pipeline)
    place(pipeline, TRADE, f"{MONTH}-09T08:00:00Z")
    place(pipeline, TRADE, f"{MONTH}-10T08:00:00Z", unit_price=1.00)
    pipeline.run("order_intake_job")
    pipeline.run("month_end_job", partition_key=MONTH)
    trail = pipeline.audit.path

    intact = invoke("audit", "verify")
    assert intact.exit_code == 0, intact.output
    count = len(pipeline.audit.events())
    assert count > 20
    assert intact.output.splitlines()[0] == f"Audit trail intact: {count} events checked."
    as_json = json.loads(invoke("audit", "verify", "--format", "json").output)
    assert (as_json["ok"], as_json["checked"], as_json["problems"]) == (True, count, [])

    # Someone with the DuckDB file and the duckdb module: each edit on its own copy.
    posted = pipeline.audit.events(action="posted").iloc[0]
    seq = int(posted["seq"])
    tampering = {
        "edited": "UPDATE audit_events SET entity_key = 'someone-else' WHERE seq = $seq",
        "deleted": "DELETE FROM audit_events WHERE seq = $seq",
        "inserted": """
            INSERT INTO audit_events
            SELECT * REPLACE (event_id || '-forged' AS event_id) FROM audit_events
            WHERE seq = $seq
        """,
    }
    expected = {
        "edited": f"row seq {seq} was changed after it was written",
        "deleted": f"row seq {seq} is missing: deleted from the trail",
        "inserted": f"seq {seq} appears more than once: a row was inserted into the trail",
    }
    for name, sql in tampering.items():
        copy = tmp_path / f"{name}.duckdb"
        shutil.copy(trail, copy)
        with duckdb.connect(str(copy)) as connection:
            connection.execute(sql, {"seq": seq})
        env = {"B2B_AUDIT_DB": str(copy)}
        caught = invoke("audit", "verify", env=env)
        assert caught.exit_code == 1, (name, caught.output)
        assert caught.output.startswith("Audit trail TAMPERED"), caught.output
        assert expected[name] in caught.output, (name, caught.output)
        report = json.loads(invoke("audit", "verify", "--format", "json", env=env).output)
        assert report["ok"] is False
        assert any(expected[name] in problem for problem in report["problems"]), report

    # The original is untouched and still verifies.
    assert invoke("audit", "verify").exit_code == 0


@pytest.mark.slow
def test_prices_shows_what_the_account_saw_before_and_after_a_price_change(
    pipeline: Pipeline,
) -> None:
    ready_portal(pipeline)
    first_push_done = datetime.now(UTC)
    time.sleep(1.1)  # --on takes whole seconds
    between = datetime.now(UTC).replace(microsecond=0)
    time.sleep(1.1)
    pipeline.erp.set_price("PL-TRADE-GBP", "BRK-0001", 1, 11.50)
    pipeline.run("price_sync_job")
    time.sleep(1.1)  # so that "now", in whole seconds, is after the second push
    assert pipeline.audit.query("SELECT max(valid_from) AS t FROM price_history")["t"][0] > (
        pd.Timestamp(first_push_done)
    ), "the second push is recorded after the first"

    def prices(on: str) -> list[dict]:
        run = invoke(
            "prices", "--account", TRADE, "--sku", "BRK-0001", "--on", on, "--format", "json"
        )
        assert run.exit_code == 0, run.output
        return json.loads(run.output)

    def single_unit(rows: list[dict]) -> list[float]:
        return [r["price"] for r in rows if r["min_quantity"] == 1]

    before = prices(between.strftime("%Y-%m-%dT%H:%M:%S"))
    assert single_unit(before) == [10.62]
    assert {r["price_list_slug"] for r in before} == {"PL-TRADE-GBP"}
    assert sorted(r["min_quantity"] for r in before) == [1, 10, 50, 100]
    now = prices(datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    assert single_unit(now) == [11.50]
    # A date alone is the whole day: both prices, in the order they held.
    assert single_unit(prices(datetime.now(UTC).strftime("%Y-%m-%d"))) == [10.62, 11.50]

    table = invoke("prices", "--account", TRADE, "--sku", "BRK-0001", "--on", "2020-01-01")
    assert table.exit_code == 0
    assert "No price for BRK-0001 was pushed to CUST0001's lists by 2020-01-01." in table.output
