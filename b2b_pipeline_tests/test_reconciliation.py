"""Month-end reconciliation: each planted discrepancy is classified exactly, and nothing else is.

The month below is the one a finance team fears: an order the ERP never got, a total edited in
the ERP, a duplicate posting (three kinds), an ERP order keyed by hand, an order held in the
exception queue, an order booked to the wrong account, cancellations on one side only, and
orders placed on either side of midnight at the month's edges.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
import pytest

from b2b_pipeline.domain.reconciliation import (
    RECONCILIATION_LINE_COLUMNS,
    Outcome,
    month_bounds,
    outcome_counts,
    previous_month,
    reconcile_month,
    summarise,
    unexplained,
)
from b2b_pipeline.domain.schemas.finance import MonthEndSummarySchema, ReconciliationLineSchema

MONTH = "2025-01"


def _portal(*rows: tuple) -> pd.DataFrame:
    columns = ["portal_order_id", "accounting_id", "portal_gross", "status", "placed_at"]
    frame = pd.DataFrame(list(rows), columns=columns)
    frame["visible_id"] = "SL-" + frame["portal_order_id"].str.removeprefix("P-")
    frame["currency"] = "GBP"
    frame["placed_at"] = pd.to_datetime(frame["placed_at"], utc=True)
    return frame


def _erp(*rows: tuple) -> pd.DataFrame:
    columns = [
        "order_no",
        "external_ref",
        "account_code",
        "po_number",
        "gross_total",
        "status",
        "order_date",
    ]
    frame = pd.DataFrame(list(rows), columns=columns)
    frame["currency"] = "GBP"
    frame["order_date"] = pd.to_datetime(frame["order_date"], utc=True)
    return frame


# fmt: off
PORTAL = _portal(
    ("P-1001", "ACME01", 120.00, "processing", "2025-01-05T10:00:00Z"),  # clean
    ("P-1002", "ACME01", 80.00, "confirmed", "2025-01-06T09:00:00Z"),    # clean, 1p rounding
    ("P-1003", "BETA02", 250.00, "processing", "2025-01-07T12:00:00Z"),  # never reached the ERP
    ("P-1004", "BETA02", 300.00, "processing", "2025-01-08T08:30:00Z"),  # total edited in ERP
    ("P-1005", "ACME01", 99.00, "processing", "2025-01-09T15:00:00Z"),   # posted twice, suffix
    ("P-1006", "GAMMA3", 45.00, "processing", "2025-01-10T11:00:00Z"),   # keyed again by number
    ("P-1007", "GAMMA3", 64.80, "processing", "2025-01-11T16:00:00Z"),   # keyed again, same PO
    ("P-1008", None, 60.00, "processing", "2025-01-12T13:00:00Z"),       # held: unmapped company
    ("P-1009", "ACME01", 70.00, "processing", "2025-01-13T10:00:00Z"),   # wrong account in ERP
    ("P-1010", "ACME01", 55.00, "cancelled", "2025-01-14T10:00:00Z"),    # cancelled in portal only
    ("P-1011", "BETA02", 42.00, "processing", "2025-01-15T10:00:00Z"),   # cancelled in ERP only
    ("P-1012", "BETA02", 18.00, "cancelled", "2025-01-16T10:00:00Z"),    # cancelled, never posted
    ("P-1015", "GAMMA3", 30.00, "processing", "2025-01-17T10:00:00Z"),   # held, keyed by hand
    ("P-0999", "ACME01", 11.00, "processing", "2024-12-31T23:59:59Z"),   # December's last second
    ("P-1013", "ACME01", 13.00, "processing", "2025-01-31T23:59:59Z"),   # January's last second
    ("P-1014", "ACME01", 14.00, "processing", "2025-02-01T00:00:00Z"),   # February's first second
    ("P-1000", "ACME01", 10.00, "processing", "2025-01-01T00:00:00Z"),   # January's first second
)
ERP = _erp(
    (5001, "P-1001", "ACME01", None, 120.00, "TO_BE_INVOICED", "2025-01-05T10:00:30Z"),
    (5002, "P-1002", "ACME01", None, 80.01, "TO_BE_INVOICED", "2025-01-06T09:00:30Z"),
    (5004, "P-1004", "BETA02", None, 310.00, "TO_BE_INVOICED", "2025-01-08T08:31:00Z"),
    (5005, "P-1005", "ACME01", None, 99.00, "TO_BE_INVOICED", "2025-01-09T15:00:30Z"),
    (5006, "P-1005-2", "ACME01", None, 99.00, "TO_BE_INVOICED", "2025-01-09T15:05:00Z"),
    (5007, "P-1006", "GAMMA3", None, 45.00, "PAID", "2025-01-10T11:00:30Z"),
    (5008, None, "GAMMA3", "SL-1006", 45.00, "PAID", "2025-01-10T14:00:00Z"),
    (5009, "P-1007", "GAMMA3", "PO-77", 64.80, "TO_BE_INVOICED", "2025-01-11T16:00:30Z"),
    (5010, None, "GAMMA3", "PO-77", 64.80, "TO_BE_INVOICED", "2025-01-12T09:00:00Z"),
    (5011, None, "DELTA4", "PHONE-ORDER", 500.00, "TO_BE_INVOICED", "2025-01-20T10:00:00Z"),
    (5012, "P-1009", "BETA02", None, 70.00, "TO_BE_INVOICED", "2025-01-13T10:00:30Z"),
    (5013, "P-1010", "ACME01", None, 55.00, "TO_BE_INVOICED", "2025-01-14T10:00:30Z"),
    (5014, "P-1011", "BETA02", None, 42.00, "CANCELLED", "2025-01-15T10:00:30Z"),
    (5017, None, "DELTA4", "VOID", 75.00, "CANCELLED", "2025-01-21T10:00:00Z"),
    (5018, None, "GAMMA3", "SL-1015", 30.00, "TO_BE_INVOICED", "2025-01-18T10:00:00Z"),
    # Posted just after midnight: each follows its portal order's month, not its own date.
    (4999, "P-0999", "ACME01", None, 11.00, "TO_BE_INVOICED", "2025-01-01T00:00:30Z"),
    (5015, "P-1013", "ACME01", None, 13.00, "TO_BE_INVOICED", "2025-02-01T00:00:20Z"),
    (5016, "P-1014", "ACME01", None, 14.00, "TO_BE_INVOICED", "2025-02-01T00:00:30Z"),
    (5000, "P-1000", "ACME01", None, 10.00, "TO_BE_INVOICED", "2025-01-01T00:00:30Z"),
)
OPEN_EXCEPTIONS = pd.DataFrame(
    [
        ("P-1008", "MAPPING", "UNMAPPED_ACCOUNT",
         "Portal company Brightside Ltd has no ERP account code: approve with its account code."),
        ("P-1015", "PRICING", "PRICE_MISMATCH",
         "Order SL-1015 totals 30.00 GBP in the portal but 32.40 GBP in the ERP."),
        ("CUST-9", "MAPPING", "UNMAPPED_CUSTOMER_GROUP", "Group 'vip' has no portal group."),
    ],
    columns=["entity_key", "category", "reason_code", "message"],
)
# fmt: on


@pytest.fixture(scope="module")
def lines() -> pd.DataFrame:
    return reconcile_month(MONTH, PORTAL, ERP, OPEN_EXCEPTIONS)


def _line(lines: pd.DataFrame, *, portal: str | None = None, erp: int | None = None) -> pd.Series:
    mask = pd.Series(True, index=lines.index)
    mask &= (
        lines["portal_order_id"].isna() if portal is None else lines["portal_order_id"] == portal
    )
    if erp is not None:
        mask &= lines["erp_order_no"] == erp
    found = lines.loc[mask]
    assert len(found) == 1, f"expected one line for portal={portal} erp={erp}, got\n{found}"
    return found.iloc[0]


@pytest.mark.parametrize(
    ("portal", "erp", "outcome"),
    [
        ("P-1000", 5000, Outcome.MATCHED),
        ("P-1001", 5001, Outcome.MATCHED),
        ("P-1002", 5002, Outcome.MATCHED),
        ("P-1003", None, Outcome.MISSING_IN_ERP),
        ("P-1004", 5004, Outcome.AMOUNT_MISMATCH),
        ("P-1005", 5005, Outcome.MATCHED),
        ("P-1005", 5006, Outcome.DUPLICATE_IN_ERP),
        ("P-1006", 5007, Outcome.MATCHED),
        ("P-1006", 5008, Outcome.DUPLICATE_IN_ERP),
        ("P-1007", 5009, Outcome.MATCHED),
        ("P-1007", 5010, Outcome.DUPLICATE_IN_ERP),
        ("P-1008", None, Outcome.EXCEPTION_OPEN),
        ("P-1009", 5012, Outcome.CUSTOMER_MISMATCH),
        ("P-1010", 5013, Outcome.STATUS_MISMATCH),
        ("P-1011", 5014, Outcome.STATUS_MISMATCH),
        ("P-1013", 5015, Outcome.MATCHED),
        ("P-1015", None, Outcome.EXCEPTION_OPEN),
        (None, 5011, Outcome.MISSING_IN_PORTAL),
        (None, 5018, Outcome.MISSING_IN_PORTAL),
    ],
)
def test_each_planted_discrepancy_gets_its_outcome(
    lines: pd.DataFrame, portal: str | None, erp: int | None, outcome: Outcome
) -> None:
    assert _line(lines, portal=portal, erp=erp)["outcome"] == outcome


def test_no_line_appears_beyond_the_planted_ones(lines: pd.DataFrame) -> None:
    assert len(lines) == 19
    assert list(lines.columns) == RECONCILIATION_LINE_COLUMNS
    assert (lines["month"] == MONTH).all()
    ReconciliationLineSchema.validate(lines)


def test_cancelled_on_the_only_side_that_has_it_produces_no_line(lines: pd.DataFrame) -> None:
    assert "P-1012" not in set(lines["portal_order_id"].dropna())
    assert 5017 not in set(lines["erp_order_no"].dropna())


def test_reasons_tell_finance_what_happened_and_what_to_do(lines: pd.DataFrame) -> None:
    edited = _line(lines, portal="P-1004", erp=5004)
    assert edited["difference"] == pytest.approx(10.0)
    assert "310.00 GBP" in edited["reason"] and "300.00 GBP" in edited["reason"]
    assert "10.00" in edited["reason"]

    held = _line(lines, portal="P-1008")
    assert OPEN_EXCEPTIONS.loc[0, "message"] in held["reason"]
    assert "MAPPING" in held["reason"] and "UNMAPPED_ACCOUNT" in held["reason"]

    suffix_duplicate = _line(lines, portal="P-1005", erp=5006)
    assert "'P-1005-2'" in suffix_duplicate["reason"] and "5005" in suffix_duplicate["reason"]
    assert "PO-77" in _line(lines, portal="P-1007", erp=5010)["reason"]
    assert "SL-1006" in _line(lines, portal="P-1006", erp=5008)["reason"]

    wrong_account = _line(lines, portal="P-1009", erp=5012)["reason"]
    assert "BETA02" in wrong_account and "ACME01" in wrong_account
    assert "cancelled" in _line(lines, portal="P-1010", erp=5013)["reason"]
    assert "CANCELLED" in _line(lines, portal="P-1011", erp=5014)["reason"]
    assert "SL-1003" in _line(lines, portal="P-1003")["reason"]
    assert "PHONE-ORDER" in _line(lines, erp=5011)["reason"]


def test_an_order_keyed_by_hand_while_held_is_flagged_on_both_lines(lines: pd.DataFrame) -> None:
    held = _line(lines, portal="P-1015")["reason"]
    assert OPEN_EXCEPTIONS.loc[1, "message"] in held
    assert "5018" in held and "twice" in held
    assert "SL-1015" in _line(lines, erp=5018)["reason"]


def test_money_columns_follow_the_sign_convention(lines: pd.DataFrame) -> None:
    missing = _line(lines, portal="P-1003")
    assert pd.isna(missing["erp_gross"]) and missing["difference"] == pytest.approx(-250.0)
    duplicate = _line(lines, portal="P-1005", erp=5006)
    assert pd.isna(duplicate["portal_gross"]) and duplicate["difference"] == pytest.approx(99.0)
    keyed = _line(lines, erp=5011)
    assert pd.isna(keyed["portal_gross"]) and keyed["difference"] == pytest.approx(500.0)
    assert _line(lines, portal="P-1002", erp=5002)["difference"] == pytest.approx(0.01)


def test_totals_in_different_currencies_are_never_compared() -> None:
    portal = _portal(("P-2001", "ACME01", 100.00, "processing", "2025-01-10T10:00:00Z"))
    portal["currency"] = "EUR"
    erp = _erp((7001, "P-2001", "ACME01", None, 100.00, "TO_BE_INVOICED", "2025-01-10"))
    [line] = reconcile_month(MONTH, portal, erp, OPEN_EXCEPTIONS).itertuples()
    assert line.outcome == Outcome.AMOUNT_MISMATCH
    assert "GBP" in line.reason and "EUR" in line.reason


def test_a_reason_survives_missing_fields() -> None:
    # A record missing its account, currency and total still gets a sentence, never a blank.
    portal = _portal(("P-3001", None, None, "processing", "2025-01-10T10:00:00Z"))
    portal["currency"] = None
    erp = _erp((8001, None, None, None, None, "PAID", "2025-01-11"))
    erp["currency"] = None
    lines = reconcile_month(MONTH, portal, erp, OPEN_EXCEPTIONS.iloc[0:0])
    assert set(lines["outcome"]) == {Outcome.MISSING_IN_ERP, Outcome.MISSING_IN_PORTAL}
    assert lines["reason"].str.len().gt(40).all()
    assert lines["reason"].str.contains("(none)", regex=False).all()
    ReconciliationLineSchema.validate(lines)


def test_a_difference_over_the_tolerance_is_reported() -> None:
    strict = reconcile_month(MONTH, PORTAL, ERP, OPEN_EXCEPTIONS, tolerance=0.0)
    assert _line(strict, portal="P-1002", erp=5002)["outcome"] == Outcome.AMOUNT_MISMATCH


def test_summary_totals_and_counts_agree_with_the_lines(lines: pd.DataFrame) -> None:
    summary = summarise(lines)
    MonthEndSummarySchema.validate(summary)
    assert summary["portal_orders"].sum() == lines["portal_order_id"].nunique()
    assert summary["erp_orders"].sum() == lines["erp_order_no"].notna().sum()
    assert summary["portal_gross"].sum() == pytest.approx(lines["portal_gross"].sum())
    assert summary["erp_gross"].sum() == pytest.approx(lines["erp_gross"].sum())
    assert summary["variance"].sum() == pytest.approx(lines["difference"].sum())
    counts = outcome_counts(lines)
    assert summary["missing_in_erp"].sum() == counts["MISSING_IN_ERP"] == 1
    assert summary["missing_in_portal"].sum() == counts["MISSING_IN_PORTAL"] == 2
    assert summary["amount_mismatches"].sum() == counts["AMOUNT_MISMATCH"] == 1
    assert summary["open_exceptions"].sum() == counts["EXCEPTION_OPEN"] == 2

    beta = summary.set_index("account_code").loc["BETA02"]
    beta_lines = lines[lines["account_code"] == "BETA02"]
    assert beta["variance"] == pytest.approx(beta_lines["difference"].sum())
    # P-1003 missing (-250) and P-1004 edited (+10). P-1009, booked here by mistake, sits on the
    # ERP's account with both totals, so it moves the counts but not the variance.
    assert beta["variance"] == pytest.approx(-250.0 + 10.0)
    assert beta["portal_orders"] == 4 and beta["erp_orders"] == 3


def test_unexplained_leaves_out_matches_and_queued_orders(lines: pd.DataFrame) -> None:
    found = unexplained(lines)
    assert found.count == len(found.lines) == 10
    assert not found.lines["outcome"].isin(["MATCHED", "EXCEPTION_OPEN"]).any()
    assert found.money["GBP"] == pytest.approx(found.lines["difference"].abs().sum())
    assert found

    clean = unexplained(lines[lines["outcome"] == "MATCHED"])
    assert not clean and clean.count == 0 and clean.money == {}


def test_a_difference_finance_approved_is_explained(lines: pd.DataFrame) -> None:
    mismatch = lines.index[lines["outcome"] == "AMOUNT_MISMATCH"][0]
    approved = lines.assign(approved_difference=lines.index == mismatch)
    before, after = unexplained(lines), unexplained(approved)
    assert after.count == before.count - 1
    assert approved.loc[mismatch, "portal_order_id"] not in set(after.lines["portal_order_id"])


@pytest.mark.parametrize(
    ("month", "present", "absent"),
    [
        ("2024-12", {"P-0999"}, {"P-1000", "P-1013", "P-1014"}),
        ("2025-01", {"P-1000", "P-1013"}, {"P-0999", "P-1014"}),
        ("2025-02", {"P-1014"}, {"P-0999", "P-1000", "P-1013"}),
    ],
)
def test_orders_at_midnight_land_in_the_month_they_were_placed(
    month: str, present: set[str], absent: set[str]
) -> None:
    month_lines = reconcile_month(month, PORTAL, ERP, OPEN_EXCEPTIONS)
    portal_ids = set(month_lines["portal_order_id"].dropna())
    assert present <= portal_ids
    assert not absent & portal_ids
    # The ERP order posted after midnight follows its portal order and matches it there.
    for portal_id in present:
        assert _line(month_lines, portal=portal_id)["outcome"] == Outcome.MATCHED
    if month != MONTH:  # e.g. ERP order 5015, dated 1 February, is January's, not February's
        assert not month_lines["outcome"].eq(Outcome.MISSING_IN_PORTAL).any()


def test_an_erp_order_without_portal_order_follows_its_own_date() -> None:
    late = _erp((6001, None, "DELTA4", "PHONE", 20.0, "PAID", "2025-02-01T00:00:00Z"))
    erp = pd.concat([ERP, late], ignore_index=True)
    january = reconcile_month(MONTH, PORTAL, erp, OPEN_EXCEPTIONS)
    february = reconcile_month("2025-02", PORTAL, erp, OPEN_EXCEPTIONS)
    assert 6001 not in set(january["erp_order_no"].dropna())
    assert _line(february, erp=6001)["outcome"] == Outcome.MISSING_IN_PORTAL


def test_an_order_out_of_the_queue_is_missing_in_the_erp() -> None:
    # An empty queue may arrive without columns; the held orders then have no explanation.
    no_queue = reconcile_month(MONTH, PORTAL, ERP, pd.DataFrame())
    assert _line(no_queue, portal="P-1008")["outcome"] == Outcome.MISSING_IN_ERP
    assert _line(no_queue, portal="P-1015")["outcome"] == Outcome.MISSING_IN_ERP
    assert not no_queue["outcome"].eq(Outcome.EXCEPTION_OPEN).any()


def test_an_empty_month_reconciles_to_no_lines() -> None:
    empty = reconcile_month(MONTH, PORTAL.iloc[0:0], ERP.iloc[0:0], OPEN_EXCEPTIONS.iloc[0:0])
    assert empty.empty and list(empty.columns) == RECONCILIATION_LINE_COLUMNS
    assert summarise(empty).empty


def test_erp_money_as_decimals_and_dates_as_text_are_understood() -> None:
    from decimal import Decimal

    erp = ERP.copy()
    erp["gross_total"] = [Decimal(str(v)) for v in erp["gross_total"]]
    erp["order_date"] = erp["order_date"].dt.strftime("%Y-%m-%d %H:%M:%S")
    as_read = reconcile_month(MONTH, PORTAL, erp, OPEN_EXCEPTIONS)
    expected = reconcile_month(MONTH, PORTAL, ERP, OPEN_EXCEPTIONS)
    pd.testing.assert_frame_equal(as_read, expected)


@pytest.mark.parametrize(
    ("month", "start", "end"),
    [
        ("2025-01", datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC)),
        ("2024-12", datetime(2024, 12, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)),
        ("2024-02", datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)),
    ],
)
def test_month_bounds_are_utc_half_open(month: str, start: datetime, end: datetime) -> None:
    assert month_bounds(month) == (start, end)


@pytest.mark.parametrize("bad", ["2025-13", "2025/01", "January", ""])
def test_a_badly_written_month_is_refused_with_the_expected_form(bad: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        month_bounds(bad)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2025, 3, 1, 6, 0, tzinfo=UTC), "2025-02"),
        (datetime(2025, 1, 1, 0, 0, tzinfo=UTC), "2024-12"),
        (date(2025, 1, 31), "2024-12"),
        # 00:30 on 1 March in UTC+2 is still February in UTC: the month before is January.
        (datetime.fromisoformat("2025-03-01T00:30:00+02:00"), "2025-01"),
    ],
)
def test_previous_month_is_the_month_before_in_utc(moment: date, expected: str) -> None:
    assert previous_month(moment) == expected
