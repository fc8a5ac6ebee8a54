"""The month-end page: the close pack of a month, from the lines its last reconciliation filed.

The figures are those of the month's ``reconciliation_lines`` as the last run (scheduled, from
the command line, or started here) filed them, so the page shows what ``b2b-pipeline reconcile
--month M --format json`` printed for that run: totals, outcomes, differences with their
reasons, per account. An approved price difference is recognised by the month-end flow's own
rule (``flows.month_end.explain_approved_differences``) and counts as explained, as it does
there.

The page never reads the matched lines: the store computes the per-account summary
(``v_month_end_reconciliation``) and the outcome counts, and hands over only the lines that are
not MATCHED, which are all the page lists and all that can be unexplained. The per-currency
totals are the close pack's own (``finance.close_pack._totals``) over those, so the page and the
files agree. The downloads hold every line and cost what the command line's files cost.

The daily chart needs both systems' orders of the month, which the lines do not hold: it comes
from the close pack's ``-daily.csv`` that a run started from this page (or ``reconcile
--format csv``) writes under ``<data dir>/reports/``, and the page says when it is older than
the lines.

Starting a run goes through ``run_job`` (``cli.runner``), as the command line's ``reconcile``
does, so it is recorded in Dagster like any other run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from b2b_pipeline.connectors.audit.store import AuditStore
from b2b_pipeline.console.formatting import records
from b2b_pipeline.domain import reconciliation as rec
from b2b_pipeline.finance.close_pack import (
    DAILY_TOTAL_COLUMNS,
    OUTCOME_MEANINGS,
    _totals,  # the close pack's own per-currency totals: page and files cannot disagree
    daily_totals,
    render_close_pack,
    write_close_pack,
)
from b2b_pipeline.finance.daily_chart import DailyChart, daily_charts
from b2b_pipeline.flows import month_end as flow

MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
# Differences listed on the page (unexplained first); the downloads hold every line.
DIFFERENCES_SHOWN = 500
DOWNLOADS = ("csv", "json", "html", "summary.csv", "daily.csv")
_MONEY = ("portal_gross", "erp_gross", "difference")
_SUMMARY_COUNTS = (
    "portal_orders",
    "erp_orders",
    "missing_in_erp",
    "missing_in_portal",
    "amount_mismatches",
    "open_exceptions",
)


def valid_month(month: str | None) -> str | None:
    return month if month and MONTH.fullmatch(month) else None


def months_offered(now: datetime | None = None) -> list[str]:
    """Every month that can be reconciled, newest first (the month-end job's partitions)."""
    first, last = flow.reconcilable_months(now)
    months = pd.period_range(first, last, freq="M").strftime("%Y-%m").tolist()
    return list(reversed(months))


def reports_dir(data_dir: Path) -> Path:
    return data_dir / "reports"


def daily_path(data_dir: Path, month: str) -> Path:
    return reports_dir(data_dir) / f"close-pack-{month}-daily.csv"


@dataclass
class ClosePack:
    """A month's close pack as the page shows it (see the module notes)."""

    month: str
    differences: pd.DataFrame  # the lines that are not MATCHED
    summary: pd.DataFrame
    outcome_lines: dict[str, int]
    daily: pd.DataFrame
    computed_at: datetime | None
    daily_as_of: datetime | None = None
    charts: list[DailyChart] = field(default_factory=list)

    @property
    def reconciled(self) -> bool:
        return self.line_count > 0

    @property
    def line_count(self) -> int:
        return sum(self.outcome_lines.values())

    @property
    def daily_is_stale(self) -> bool:
        if self.computed_at is None or self.daily_as_of is None:
            return False
        return self.daily_as_of < self.computed_at

    @property
    def unexplained(self) -> rec.UnexplainedDifferences:
        return flow.unexplained(self.differences)

    def totals(self) -> list[dict[str, Any]]:
        """Per currency, as the close pack's first table (a MATCHED line is never
        unexplained, so the differences are all ``_totals`` needs besides the summary)."""
        return _totals(self.differences, self.summary)

    def outcomes(self) -> list[dict[str, Any]]:
        return [
            {
                "outcome": outcome.value,
                "count": int(self.outcome_lines.get(outcome.value, 0)),
                "meaning": OUTCOME_MEANINGS[outcome],
            }
            for outcome in rec.Outcome
        ]

    def listed_differences(self, limit: int = DIFFERENCES_SHOWN) -> list[dict[str, Any]]:
        """Lines that are not MATCHED: unexplained first, then approved or queued ones."""
        frame = self.differences
        explained = {o.value for o in rec.EXPLAINED_OUTCOMES}
        settled = frame["outcome"].isin(explained) | frame["approved_difference"].astype(bool)
        ordered = (
            frame.assign(_settled=settled)
            .sort_values(
                ["_settled", "outcome", "account_code", "portal_order_id", "erp_order_no"],
                na_position="first",
                kind="stable",
            )
            .head(limit)
        )
        return records(ordered)

    def per_account(self) -> list[dict[str, Any]]:
        return records(self.summary)


def _as_float(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    for column in columns:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return frame


def _explained(store: AuditStore, lines: pd.DataFrame) -> pd.DataFrame:
    """``lines`` with ``approved_difference`` (the month-end flow's own rule) and, beside the
    portal id, ``order_number`` (the number the buyer sees) for the lines not matched."""
    lines = lines.reset_index(drop=True)
    mismatched = lines.loc[
        lines["outcome"] == rec.Outcome.AMOUNT_MISMATCH.value, "portal_order_id"
    ].dropna()
    if mismatched.empty:
        lines["approved_difference"] = False
    else:
        marked = flow.explain_approved_differences(
            lines,
            store.exception_queue(statuses=["approved", "resolved"], reason_code="PRICE_MISMATCH"),
            approvers=flow.approvers(store),
            posted_erp_gross=flow.posted_erp_gross(store, mismatched.tolist()),
        )
        # The reason as filed (it already says who approved what); only the flag is taken.
        lines["approved_difference"] = marked["approved_difference"].to_numpy()
    differing = lines.loc[lines["outcome"] != rec.Outcome.MATCHED.value, "portal_order_id"]
    numbers = store.order_numbers(differing.dropna().astype(str).unique().tolist())
    lines.insert(
        list(lines.columns).index("portal_order_id") + 1,
        "order_number",
        lines["portal_order_id"].map(numbers).astype(object),
    )
    return lines


def _summary(store: AuditStore, month: str) -> pd.DataFrame:
    """``v_month_end_reconciliation`` for the month, typed as ``rec.summarise`` types it."""
    summary = store.month_end_reconciliation(month).reindex(columns=rec.MONTH_END_SUMMARY_COLUMNS)
    for column in _SUMMARY_COUNTS:
        summary[column] = pd.to_numeric(summary[column]).fillna(0).astype("int64")
    return _as_float(summary, ("portal_gross", "erp_gross", "variance"))


def _empty_summary() -> pd.DataFrame:
    return pd.DataFrame(columns=rec.MONTH_END_SUMMARY_COLUMNS)


def _empty_daily() -> pd.DataFrame:
    return pd.DataFrame(columns=DAILY_TOTAL_COLUMNS).astype(
        {"day": "datetime64[ns]", "portal_orders": "int64", "erp_orders": "int64"}
    )


def _read_daily(path: Path) -> tuple[pd.DataFrame, datetime | None]:
    if not path.exists():
        return _empty_daily(), None
    try:
        daily = pd.read_csv(path, parse_dates=["day"])
    except (ValueError, OSError, pd.errors.ParserError):
        return _empty_daily(), None
    if list(daily.columns) != DAILY_TOTAL_COLUMNS:
        return _empty_daily(), None
    return daily, datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)


def close_pack(store: AuditStore, month: str, data_dir: Path) -> ClosePack:
    """The month's close pack from what its last run filed (empty when never reconciled)."""
    outcomes = store.reconciliation_outcomes(month)
    computed_at = None
    if not outcomes.empty:
        computed_at = pd.Timestamp(outcomes["computed_at"].max()).to_pydatetime()
    differences = store.reconciliation_differences(month)[rec.RECONCILIATION_LINE_COLUMNS]
    daily, as_of = _read_daily(daily_path(data_dir, month))
    return ClosePack(
        month=month,
        differences=_explained(store, differences),
        summary=_summary(store, month) if not outcomes.empty else _empty_summary(),
        outcome_lines=dict(zip(outcomes["outcome"], outcomes["lines"].astype(int), strict=True)),
        daily=daily,
        computed_at=computed_at,
        daily_as_of=as_of,
        charts=daily_charts(daily) if not daily.empty else [],
    )


def render_download(store: AuditStore, month: str, data_dir: Path, kind: str) -> str:
    """The whole close pack of the month, every line, as the command line writes it: ``csv``
    (the lines), ``summary.csv``, ``daily.csv``, ``json`` or ``html``."""
    stored = store.reconciliation_lines(month)
    lines = _explained(store, _as_float(stored[rec.RECONCILIATION_LINE_COLUMNS].copy(), _MONEY))
    summary = rec.summarise(lines) if not lines.empty else _empty_summary()
    daily, _ = _read_daily(daily_path(data_dir, month))
    if kind == "summary.csv":
        return summary.to_csv(index=False)
    if kind == "daily.csv":
        return daily.assign(day=daily["day"].dt.strftime("%Y-%m-%d")).to_csv(index=False)
    return render_close_pack(month, lines, summary, daily, kind)  # type: ignore[arg-type]


def save_run_pack(result: flow.MonthEnd, data_dir: Path) -> list[Path]:
    """After a run started here: the close pack's csv files (lines, summary, daily) under
    ``reports/``, as ``reconcile --format csv`` writes them; the daily file feeds the chart."""
    daily = daily_totals(result.portal_orders, result.erp_orders, month=result.month)
    target = reports_dir(data_dir) / f"close-pack-{result.month}.csv"
    return write_close_pack(result.month, result.lines, result.summary, daily, target, "csv")
