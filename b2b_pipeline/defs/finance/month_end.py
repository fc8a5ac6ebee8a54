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

from b2b_pipeline.connectors.sparklayer import purchases as wire
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


def _amount(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def portal_orders_between(systems: Systems, start, end) -> pd.DataFrame:
    """Live and cancelled portal orders placed in [start, end), one row each."""
    accounts = {c.get("id"): c.get("accounting_id") for c in systems.portal.iter_customers()}
    live_types = set(systems.mappings.live_types)
    rows = []
    # updated_at >= placed_at, so asking for purchases updated since the start loses none.
    for p in systems.portal.iter_purchases(updated_gte=start):
        updated = wire.purchase_updated_at(p)
        if wire.purchase_type(p) not in live_types or updated is None:
            continue
        if updated < pd.Timestamp(start):
            continue
        placed = wire.placed_or_created_at(p)
        try:
            placed_at = pd.Timestamp(placed).tz_convert("UTC") if placed else None
        except (TypeError, ValueError):
            placed_at = None
        if placed_at is None or not (pd.Timestamp(start) <= placed_at < pd.Timestamp(end)):
            continue
        rows.append(
            {
                "portal_order_id": wire.purchase_id(p),
                "visible_id": wire.visible_id(p),
                "accounting_id": accounts.get(wire.customer_id(p)),
                "currency": wire.currency_of(p),
                "portal_gross": _amount(wire.gross_total(p)),
                # The reconciliation compares a portal order's state: live, or cancelled.
                "status": rec.PORTAL_CANCELLED if wire.is_cancelled(p) else wire.purchase_type(p),
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
    mismatched = lines.loc[
        lines["outcome"] == rec.Outcome.AMOUNT_MISMATCH.value, "portal_order_id"
    ].dropna()
    lines = explain_approved_differences(
        lines,
        systems.audit.exceptions(status=["approved", "resolved"]),
        approvers=approvers(systems),
        posted_erp_gross=posted_erp_gross(systems, mismatched.tolist()),
    )
    systems.audit.write_reconciliation_lines(month, lines, systems.run_id)
    return MonthEnd(
        month=month,
        lines=lines,
        summary=rec.summarise(lines),
        portal_orders=portal,
        erp_orders=erp,
    )


def approvers(systems: Systems) -> pd.Series:
    """exception_id -> who approved it last, from the audit trail.

    Not the queue's ``resolved_by``: once the approved order is retried and posted, the queue
    row is resolved *by the pipeline*, which overwrites the name of the person who approved.
    """
    events = systems.audit.approval_events()
    return events.drop_duplicates("exception_id", keep="last").set_index("exception_id")[
        "approved_by"
    ]


def posted_erp_gross(systems: Systems, order_ids: list[str]) -> pd.Series:
    """portal_order_id -> the ERP gross the pipeline posted (``order_postings``)."""
    if not order_ids:
        return pd.Series(dtype="float64")
    posted = systems.audit.posted_erp_gross(order_ids)
    return posted.set_index("portal_order_id")["erp_gross"].astype("float64")


def explain_approved_differences(
    lines: pd.DataFrame,
    decided: pd.DataFrame,
    approvers: pd.Series | None = None,
    posted_erp_gross: pd.Series | None = None,
) -> pd.DataFrame:
    """Mark amount differences finance approved at posting time (``exceptions approve --accept
    erp-price|portal-price``): still an AMOUNT_MISMATCH, by contract, but explained, and the
    reason says who approved which price (``approvers``: exception_id -> name, see
    :func:`approvers`; without it, the queue's ``resolved_by``).

    With ``posted_erp_gross`` (portal_order_id -> ERP gross when posted), the approval covers
    only the amount that was posted: an approved order whose ERP total was edited afterwards is
    unexplained again, and its reason says so, so an approval never hides a later change."""
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
    if posted_erp_gross is not None and hit.any():
        posted = lines["portal_order_id"].map(posted_erp_gross)
        # Cent precision: the ERP stores money to 2 dp (DECIMAL 4 dp in the audit store).
        changed = hit & (posted.isna() | ((lines["erp_gross"] - posted).abs() > 0.005))
        if changed.any():
            ids = lines.loc[changed, "portal_order_id"].map(by_order["exception_id"])
            was = posted[changed].map(lambda v: "unknown" if pd.isna(v) else f"{v:.2f}")
            lines.loc[changed, "reason"] = (
                lines.loc[changed, "reason"].fillna("")
                + " A price difference was approved for this order ("
                + ids
                + ") when it was posted at "
                + was
                + ", but the ERP total has changed since: the approval does not cover it."
            )
            hit &= ~changed
    if hit.any():
        keys = lines.loc[hit, "portal_order_id"]
        ids = keys.map(by_order["exception_id"])
        who = keys.map(by_order["resolved_by"])
        if approvers is not None and not approvers.empty:
            who = ids.map(approvers).fillna(who)
        who = who.fillna("finance")
        which = (
            keys.map(by_order["decision"])
            .str.contains("portal_price")
            .map({True: "portal", False: "ERP"})
        )
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
