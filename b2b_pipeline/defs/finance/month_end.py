"""Month-end reconciliation: read both systems for a month and compare them order by order.

The comparison rules are in ``b2b_pipeline.domain.reconciliation``; this module reads the month's
portal purchases (with a few days' margin either side, so an order placed at 23:59:59 and
posted a minute later lands in the right month), the ERP's sales orders and the open exception
queue, and files the lines in the audit store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pandas as pd

from b2b_pipeline.defs.orders.intake import purchase_updated_at
from b2b_pipeline.defs.systems import Systems
from b2b_pipeline.domain import reconciliation as rec

MARGIN = timedelta(days=5)


@dataclass
class MonthEnd:
    month: str
    lines: pd.DataFrame
    summary: pd.DataFrame
    portal_orders: pd.DataFrame
    erp_orders: pd.DataFrame


def _money(value: object) -> float | None:
    try:
        return float(value["number"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return None


def portal_orders_between(systems: Systems, start, end) -> pd.DataFrame:
    """Live and cancelled portal orders placed in [start, end), one row each."""
    accounts = {c.get("id"): c.get("accounting_id") for c in systems.portal.iter_customers()}
    keep = set(systems.mappings.live_statuses) | {rec.PORTAL_CANCELLED}
    rows = []
    # updated_at >= placed_at, so asking for purchases updated since the start loses none.
    for p in systems.portal.iter_purchases(updated_since=start):
        if p.get("status") not in keep or purchase_updated_at(p) < pd.Timestamp(start):
            continue
        placed = (p.get("dates") or {}).get("placed_at") or (p.get("dates") or {}).get("created_at")
        placed_at = pd.Timestamp(placed).tz_convert("UTC") if placed else None
        if placed_at is None or not (pd.Timestamp(start) <= placed_at < pd.Timestamp(end)):
            continue
        total = p.get("calculated_total") or {}
        rows.append(
            {
                "portal_order_id": str(p.get("id")),
                "visible_id": (p.get("purchase_identifiers") or {}).get("visible"),
                "accounting_id": accounts.get(
                    (p.get("customer_identifiers") or {}).get("sparklayer")
                ),
                "currency": total.get("currency") if isinstance(total, dict) else None,
                "portal_gross": _money(total),
                "status": p.get("status"),
                "placed_at": placed_at,
            }
        )
    return pd.DataFrame(rows, columns=rec.PORTAL_ORDER_COLUMNS)


def reconcile(systems: Systems, month: str) -> MonthEnd:
    start, end = rec.month_bounds(month)
    portal = portal_orders_between(systems, start - MARGIN, end + MARGIN)
    erp = systems.erp.read_sales_orders(start - MARGIN, end + MARGIN)
    queue = systems.audit.exceptions(status=["open", "approved"])
    queue = queue[queue["entity"] == "order"] if not queue.empty else queue
    lines = rec.reconcile_month(
        month, portal, erp, queue, tolerance=systems.mappings.price_tolerance
    )
    lines = explain_approved_differences(
        lines, systems.audit.exceptions(status=["approved", "resolved"])
    )
    systems.audit.write_reconciliation_lines(month, lines, systems.run_id)
    return MonthEnd(
        month=month,
        lines=lines,
        summary=rec.summarise(lines),
        portal_orders=portal,
        erp_orders=erp,
    )


def explain_approved_differences(lines: pd.DataFrame, decided: pd.DataFrame) -> pd.DataFrame:
    """Mark amount differences finance approved at posting time (``exceptions approve --accept
    erp-price|portal-price``): still an AMOUNT_MISMATCH, by contract, but explained, and the
    reason says who approved which price."""
    lines = lines.assign(approved_difference=False)
    if decided.empty or lines.empty:
        return lines
    pricing = decided[
        (decided["entity"] == "order")
        & (decided["reason_code"] == "PRICE_MISMATCH")
        & decided["decision"].fillna("").astype(str).str.contains('"accept"')
    ].drop_duplicates("entity_key", keep="last")
    if pricing.empty:
        return lines
    by_order = pricing.set_index("entity_key")
    hit = (lines["outcome"] == rec.Outcome.AMOUNT_MISMATCH.value) & lines["portal_order_id"].isin(
        by_order.index
    )
    if hit.any():
        keys = lines.loc[hit, "portal_order_id"]
        who = keys.map(by_order["resolved_by"]).fillna("finance")
        which = (
            keys.map(by_order["decision"])
            .str.contains("portal_price")
            .map({True: "portal", False: "ERP"})
        )
        ids = keys.map(by_order["exception_id"])
        lines.loc[hit, "reason"] = (
            "Difference approved by "
            + who
            + ": posted at the "
            + which
            + " price ("
            + ids
            + "). "
            + lines.loc[hit, "reason"].fillna("")
        )
        lines.loc[hit, "approved_difference"] = True
    return lines


def unexplained(lines: pd.DataFrame) -> rec.UnexplainedDifferences:
    """What finance still has to look at: not matched, not queued, not an approved difference."""
    if "approved_difference" in lines:
        lines = lines[~lines["approved_difference"].astype(bool)]
    return rec.unexplained(lines)
