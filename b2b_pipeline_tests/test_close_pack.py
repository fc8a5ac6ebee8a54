"""The close pack finance files: each rendering carries the same figures as the reconciliation,
the html shows every difference with its reason and a chart, and nothing in it is executable."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from b2b_pipeline.domain.reconciliation import Outcome, reconcile_month, summarise
from b2b_pipeline.domain.schemas.finance import DailyTotalsSchema
from b2b_pipeline.finance.close_pack import daily_totals, render_close_pack, write_close_pack
from b2b_pipeline_tests.test_reconciliation import ERP, MONTH, OPEN_EXCEPTIONS, PORTAL

HOSTILE_MESSAGE = 'Company "<script>alert(1)</script>" & Co has no ERP account code.'
GENERATED_AT = datetime(2025, 2, 1, 6, 0, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def pack() -> dict[str, pd.DataFrame]:
    exceptions = OPEN_EXCEPTIONS.copy()
    exceptions.loc[0, "message"] = HOSTILE_MESSAGE  # portal data quoted in a reason
    lines = reconcile_month(MONTH, PORTAL, ERP, exceptions)
    return {
        "lines": lines,
        "summary": summarise(lines),
        "daily": daily_totals(PORTAL, ERP, month=MONTH),
    }


class _Page(HTMLParser):
    """What a reader sees (text) and what a browser would build (tags)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.chunks: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.chunks.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.chunks).split())


def _parsed(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


def _render(pack: dict[str, pd.DataFrame], fmt: str) -> str:
    return render_close_pack(
        MONTH, pack["lines"], pack["summary"], pack["daily"], fmt, generated_at=GENERATED_AT
    )


def test_html_pack_shows_totals_every_difference_and_its_reason(pack) -> None:
    page = _parsed(_render(pack, "html"))
    lines, summary = pack["lines"], pack["summary"]
    for total in ("portal_gross", "erp_gross", "variance"):
        assert f"{summary[total].sum():,.2f}" in page.text
    assert "2025-02-01 06:00:12 UTC" in page.text
    differences = lines[lines["outcome"] != "MATCHED"]
    assert len(differences) == 12
    for reason in differences["reason"]:
        assert " ".join(reason.split()) in page.text
    for account in summary["account_code"].dropna():
        assert account in page.text


def test_html_pack_draws_the_daily_chart_inline(pack) -> None:
    page = _parsed(_render(pack, "html"))
    assert page.tags.count("svg") == 1
    # One portal bar and one ERP bar for each of January's 31 days.
    assert page.tags.count("rect") == 2 * 31
    assert "2025-01-05 Portal: 120.00 GBP" in page.text
    assert not {"script", "link", "iframe", "img"} & set(page.tags)


def test_html_pack_escapes_what_it_quotes(pack) -> None:
    html = _render(pack, "html")
    page = _parsed(html)
    assert "script" not in page.tags
    assert HOSTILE_MESSAGE in page.text  # shown as text, exactly as the queue holds it
    assert "&lt;script&gt;" in html and "&amp; Co" in html


def test_csv_pack_reads_back_with_the_same_numbers(pack, tmp_path: Path) -> None:
    written = write_close_pack(
        MONTH, pack["lines"], pack["summary"], pack["daily"], tmp_path / "jan.csv", "csv"
    )
    assert [path.name for path in written] == ["jan.csv", "jan-summary.csv", "jan-daily.csv"]

    lines = pd.read_csv(written[0], dtype={"erp_order_no": "Int64"})
    expected = pack["lines"]
    assert list(lines.columns) == list(expected.columns)
    pd.testing.assert_series_equal(lines["erp_order_no"], expected["erp_order_no"])
    for column in ("portal_gross", "erp_gross", "difference"):
        pd.testing.assert_series_equal(lines[column], expected[column])
    assert lines["reason"].tolist() == expected["reason"].tolist()

    summary = pd.read_csv(written[1])
    pd.testing.assert_frame_equal(
        summary.drop(columns="account_code"), pack["summary"].drop(columns="account_code")
    )
    daily = pd.read_csv(written[2], parse_dates=["day"])
    assert daily["erp_gross"].sum() == pytest.approx(pack["daily"]["erp_gross"].sum())
    assert len(daily) == 31


def test_json_pack_reads_back_with_the_same_numbers(pack, tmp_path: Path) -> None:
    [path] = write_close_pack(
        MONTH,
        pack["lines"],
        pack["summary"],
        pack["daily"],
        tmp_path,
        "json",
        generated_at=GENERATED_AT,
    )
    assert path.name == f"close-pack-{MONTH}.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    lines = pd.DataFrame(document["lines"])
    expected = pack["lines"]
    assert len(lines) == len(expected)
    assert lines["difference"].sum() == pytest.approx(expected["difference"].sum())
    assert lines["outcome"].tolist() == expected["outcome"].tolist()
    assert (
        document["outcomes"]
        == expected["outcome"]
        .value_counts()
        .reindex(document["outcomes"].keys(), fill_value=0)
        .to_dict()
    )

    [totals] = document["totals"]
    summary = pack["summary"]
    assert totals["currency"] == "GBP"
    assert totals["portal_gross"] == pytest.approx(summary["portal_gross"].sum())
    assert totals["erp_gross"] == pytest.approx(summary["erp_gross"].sum())
    assert totals["variance"] == pytest.approx(summary["variance"].sum())
    assert totals["unexplained_lines"] == document["unexplained"]["count"] == 10
    assert pd.DataFrame(document["summary"])["variance"].sum() == pytest.approx(
        summary["variance"].sum()
    )
    assert document["generated_at"] == "2025-02-01T06:00:12+00:00"


def test_daily_totals_count_live_orders_on_their_own_day(pack) -> None:
    daily = pack["daily"]
    DailyTotalsSchema.validate(daily)
    assert daily["day"].min() == pd.Timestamp("2025-01-01")
    assert daily["day"].max() == pd.Timestamp("2025-01-31")
    assert daily["day"].is_unique and len(daily) == 31

    placed = PORTAL["placed_at"]
    in_month = (placed >= "2025-01-01T00:00:00Z") & (placed < "2025-02-01T00:00:00Z")
    live = PORTAL["status"] != "cancelled"
    assert daily["portal_gross"].sum() == pytest.approx(
        PORTAL.loc[in_month & live, "portal_gross"].sum()
    )
    assert daily["portal_orders"].sum() == (in_month & live).sum()
    # ERP order 5015, posted at 00:00:20 on 1 February, is February's on the ERP's own dates.
    first = daily.set_index("day").loc[pd.Timestamp("2025-01-01")]
    assert first["portal_orders"] == 1 and first["erp_orders"] == 2
    assert first["difference"] == pytest.approx(first["erp_gross"] - first["portal_gross"])


def test_an_unknown_format_is_refused(pack) -> None:
    with pytest.raises(ValueError, match="csv, json, html"):
        _render(pack, "xlsx")


def test_the_runbook_explains_every_outcome_the_pack_can_show() -> None:
    runbook = (Path(__file__).parents[1] / "docs" / "runbook.md").read_text(encoding="utf-8")
    for outcome in Outcome:
        assert f"| `{outcome}` |" in runbook, f"docs/runbook.md does not explain {outcome}"
