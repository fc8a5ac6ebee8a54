"""The month-end close pack: what finance files to show the portal and the ERP agree.

Three renderings of the same figures:

- ``csv``: every reconciliation line in the named file, with the per-account summary and the
  daily totals beside it (``<name>-summary.csv``, ``<name>-daily.csv``), for a spreadsheet;
- ``json``: one document (totals, outcome counts, summary, daily totals, every line), for a
  script or a BI tool;
- ``html``: one self-contained page (inline CSS, an inline SVG chart, no JavaScript or CDN) with
  the totals, every difference and its reason, the per-account summary and the daily chart.

The inputs are the outputs of :mod:`b2b_pipeline.domain.reconciliation` (``lines``,
``summarise(lines)``) and :func:`daily_totals`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import jinja2
import pandas as pd

from b2b_pipeline.domain.reconciliation import (
    EXPLAINED_OUTCOMES,
    Outcome,
    month_bounds,
    outcome_counts,
    unexplained,
)
from b2b_pipeline.finance.daily_chart import daily_charts

ClosePackFormat = Literal["csv", "json", "html"]
CLOSE_PACK_FORMATS: tuple[ClosePackFormat, ...] = ("csv", "json", "html")

DAILY_TOTAL_COLUMNS = [
    "day",
    "currency",
    "portal_orders",
    "portal_gross",
    "erp_orders",
    "erp_gross",
    "difference",
]

#: What each outcome means, in the words the close pack and the runbook use.
OUTCOME_MEANINGS: dict[str, str] = {
    Outcome.MATCHED: "Same account, status and total in the portal and the ERP.",
    Outcome.MISSING_IN_ERP: "Placed in the portal, not in the ERP and not held in the queue.",
    Outcome.MISSING_IN_PORTAL: "In the ERP with no portal order (entered directly, or a wrong "
    "reference).",
    Outcome.AMOUNT_MISMATCH: "Totals differ by more than the tolerance (or the currencies differ).",
    Outcome.STATUS_MISMATCH: "Cancelled in one system but not in the other.",
    Outcome.CUSTOMER_MISMATCH: "Booked to a different account in the ERP.",
    Outcome.DUPLICATE_IN_ERP: "A second ERP order for a portal order already in the ERP.",
    Outcome.EXCEPTION_OPEN: "Not in the ERP yet: held in the exception queue for a known reason.",
}

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("b2b_pipeline.finance", "templates"),
    # Reasons quote exception messages and portal data (PO numbers, company names): never let
    # them become markup in a document finance opens.
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


# --------------------------------------------------------------------------------------------
# Daily totals


def daily_totals(
    portal_orders: pd.DataFrame,
    erp_orders: pd.DataFrame,
    *,
    month: str | None = None,
) -> pd.DataFrame:
    """Per UTC day and currency: orders and gross booked by the portal and by the ERP.

    Portal orders count on their ``placed_at`` day, ERP orders on their ``order_date`` day;
    cancelled orders are left out (the chart shows live sales). With ``month``, only that month's
    days are kept, and every day of it is listed (zero where nothing was booked), so the chart
    has no gaps.
    """
    portal = pd.DataFrame(
        {
            "day": _utc_day(portal_orders["placed_at"]),
            "currency": portal_orders["currency"],
            "gross": pd.to_numeric(portal_orders["portal_gross"], errors="coerce"),
            "live": portal_orders["status"].astype("string").str.lower() != "cancelled",
        }
    )
    erp = pd.DataFrame(
        {
            "day": _utc_day(erp_orders["order_date"]),
            "currency": erp_orders["currency"],
            "gross": pd.to_numeric(erp_orders["gross_total"], errors="coerce"),
            "live": erp_orders["status"].astype("string").str.upper() != "CANCELLED",
        }
    )
    by_day = pd.concat(
        [_per_day(portal, "portal"), _per_day(erp, "erp")], axis=1, join="outer"
    ).reset_index()
    if month is not None:
        start, end = (bound.replace(tzinfo=None) for bound in month_bounds(month))
        by_day = by_day.loc[(by_day["day"] >= start) & (by_day["day"] < end)]
        every_day = pd.MultiIndex.from_product(
            [
                pd.date_range(start, end, freq="D", inclusive="left"),
                by_day["currency"].drop_duplicates(),
            ],
            names=["day", "currency"],
        )
        by_day = by_day.set_index(["day", "currency"]).reindex(every_day).reset_index()
    for column in ("portal_orders", "erp_orders"):
        by_day[column] = by_day[column].fillna(0).astype("int64")
    for column in ("portal_gross", "erp_gross"):
        by_day[column] = by_day[column].fillna(0.0).astype("float64").round(4)
    by_day["difference"] = (by_day["erp_gross"] - by_day["portal_gross"]).round(4)
    by_day["day"] = by_day["day"].astype("datetime64[ns]")
    return by_day.sort_values(["currency", "day"]).reset_index(drop=True)[DAILY_TOTAL_COLUMNS]


def _utc_day(values: pd.Series) -> pd.Series:
    moments = pd.to_datetime(values, utc=True, format="mixed")
    return moments.dt.tz_localize(None).dt.floor("D")


def _per_day(frame: pd.DataFrame, system: str) -> pd.DataFrame:
    live = frame.loc[frame["live"]]
    return (
        live.groupby(["day", "currency"], dropna=False)["gross"]
        .agg(["count", "sum"])
        .rename(columns={"count": f"{system}_orders", "sum": f"{system}_gross"})
    )


# --------------------------------------------------------------------------------------------
# Rendering


def render_close_pack(
    month: str,
    lines: pd.DataFrame,
    summary: pd.DataFrame,
    daily: pd.DataFrame,
    fmt: ClosePackFormat,
    *,
    generated_at: datetime | None = None,
) -> str:
    """The close pack as text. For ``csv`` this is the lines only (see :func:`write_close_pack`)."""
    generated_at = (generated_at or datetime.now(UTC)).astimezone(UTC)
    if fmt == "csv":
        return _csv(lines)
    if fmt == "json":
        return _json(month, lines, summary, daily, generated_at)
    if fmt == "html":
        return _html(month, lines, summary, daily, generated_at)
    raise ValueError(
        f"close pack format must be one of {', '.join(CLOSE_PACK_FORMATS)}, not {fmt!r}"
    )


def write_close_pack(
    month: str,
    lines: pd.DataFrame,
    summary: pd.DataFrame,
    daily: pd.DataFrame,
    out: Path,
    fmt: ClosePackFormat,
    *,
    generated_at: datetime | None = None,
) -> list[Path]:
    """Write the close pack and return the files written, the main one first.

    ``out`` is a file, or an existing folder in which the pack is named
    ``close-pack-YYYY-MM.<fmt>``. ``csv`` also writes ``<name>-summary.csv`` and
    ``<name>-daily.csv`` beside the lines.
    """
    out = Path(out)
    if out.is_dir():
        out = out / f"close-pack-{month}.{fmt}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        render_close_pack(month, lines, summary, daily, fmt, generated_at=generated_at),
        encoding="utf-8",
    )
    written = [out]
    if fmt == "csv":
        for name, frame in (("summary", summary), ("daily", _daily_for_output(daily))):
            sibling = out.with_name(f"{out.stem}-{name}.csv")
            frame.to_csv(sibling, index=False)
            written.append(sibling)
    return written


def _csv(lines: pd.DataFrame) -> str:
    return lines.to_csv(index=False)


def _daily_for_output(daily: pd.DataFrame) -> pd.DataFrame:
    return daily.assign(day=pd.to_datetime(daily["day"]).dt.strftime("%Y-%m-%d"))


def _records_json(frame: pd.DataFrame) -> str:
    # pandas writes NaN/NA as null and does it in C: a million lines stay fast.
    return frame.to_json(orient="records", double_precision=4, date_format="iso")


def _json(
    month: str,
    lines: pd.DataFrame,
    summary: pd.DataFrame,
    daily: pd.DataFrame,
    generated_at: datetime,
) -> str:
    header = {
        "month": month,
        "generated_at": generated_at.isoformat(timespec="seconds"),
        "totals": _totals(lines, summary),
        "outcomes": outcome_counts(lines),
    }
    unexplained_lines = unexplained(lines)
    header["unexplained"] = {"count": unexplained_lines.count, "money": unexplained_lines.money}
    # Spliced rather than re-parsed, so the lines are serialised once.
    body = json.dumps(header, indent=2)[:-2]
    return (
        f"{body},\n"
        f'  "summary": {_records_json(summary)},\n'
        f'  "daily": {_records_json(_daily_for_output(daily))},\n'
        f'  "lines": {_records_json(lines)}\n'
        "}\n"
    )


def _totals(lines: pd.DataFrame, summary: pd.DataFrame) -> list[dict[str, Any]]:
    """Per currency: what each system booked, the variance and what is left to explain."""
    per_currency = summary.groupby(summary["currency"].fillna(""), sort=True)[
        ["portal_orders", "erp_orders", "portal_gross", "erp_gross", "variance"]
    ].sum()
    open_lines = unexplained(lines)
    open_count = open_lines.lines.groupby(open_lines.lines["currency"].fillna("")).size()
    return [
        {
            "currency": currency or None,
            "portal_orders": int(row["portal_orders"]),
            "erp_orders": int(row["erp_orders"]),
            "portal_gross": round(float(row["portal_gross"]), 2),
            "erp_gross": round(float(row["erp_gross"]), 2),
            "variance": round(float(row["variance"]), 2),
            "unexplained_lines": int(open_count.get(currency, 0)),
            "unexplained_money": round(open_lines.money.get(str(currency), 0.0), 2),
        }
        for currency, row in per_currency.iterrows()
    ]


def _html(
    month: str,
    lines: pd.DataFrame,
    summary: pd.DataFrame,
    daily: pd.DataFrame,
    generated_at: datetime,
) -> str:
    explained = {outcome.value for outcome in EXPLAINED_OUTCOMES}
    differences = lines.loc[lines["outcome"] != Outcome.MATCHED.value].copy()
    # Unexplained first (they need someone), then the ones waiting in the queue.
    differences["_queued"] = differences["outcome"].isin(explained)
    if "approved_difference" in differences:
        # A difference finance approved is explained too: it sorts with the queued ones.
        differences["_queued"] |= differences["approved_difference"].fillna(False).astype(bool)
    differences = differences.sort_values(
        ["_queued", "outcome", "account_code", "portal_order_id", "erp_order_no"],
        na_position="first",
    )
    counts = outcome_counts(lines)
    template = _TEMPLATES.get_template("close_pack.html")
    return template.render(
        month=month,
        month_title=datetime.strptime(month, "%Y-%m").strftime("%B %Y"),
        generated_at=generated_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
        totals=_totals(lines, summary),
        outcomes=[
            {"outcome": outcome, "count": counts[outcome], "meaning": OUTCOME_MEANINGS[outcome]}
            for outcome in counts
        ],
        line_count=len(lines),
        differences=_records(differences.drop(columns="_queued")),
        summary=_records(summary),
        charts=daily_charts(daily),
        explained=explained,
    )


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows for the template, with every missing value (NaN, NA, NaT) as ``None``."""
    as_objects = frame.astype(object)
    records = as_objects.where(frame.notna(), None).to_dict(orient="records")
    return [{str(key): value for key, value in record.items()} for record in records]
