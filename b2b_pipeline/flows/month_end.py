"""Month-end reconciliation: read both systems for a month and compare them order by order.

One implementation for the ``month_end_reconciliation`` asset (the monthly close and the daily
month-to-date run), the ``b2b-pipeline reconcile`` command and the console's month page:
:func:`run_month_end` reads the month's portal purchases (with a few days' margin either side,
so an order placed at 23:59:59 and posted a minute later lands in the right month), the ERP's
sales orders and the exception queue, compares them with the rules of
``b2b_pipeline.domain.reconciliation``, explains the differences finance approved, and files
the lines in the audit store (a rerun of a month replaces its lines).

Reason texts match the state of what they describe:

- an amount difference finance approved when the order was posted (``exceptions approve
  --accept erp-price|portal-price``) stays ``AMOUNT_MISMATCH`` by contract, but is explained:
  its reason says who approved which price and that nothing is left to do (not "find who
  changed the order"); an approved order whose ERP total was edited after posting is
  unexplained again, and says so;
- an order held in the queue under an approval that waits for its retry says who approved it
  and what was decided, instead of the exception's original "approve with ..." advice;
- an order someone ignored in the queue (``exceptions ignore``: a test order, a duplicate the
  buyer placed twice) is not in the ERP by decision: it is ``EXCEPTION_OPEN`` ("held in the
  queue with a known reason", the contract's outcome for it), and its reason says who ignored it,
  when and why, instead of an unexplained ``MISSING_IN_ERP`` that sends finance looking.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd

from b2b_pipeline.domain import reconciliation as rec

if TYPE_CHECKING:
    from b2b_pipeline.config.mappings import Mappings
    from b2b_pipeline.flows.ports import AuditTrail, Erp, Portal

MARGIN = timedelta(days=5)
# The first month the pipeline reconciles (the monthly partitions start here); the last is the
# current month (UTC), reconciled to date.
FIRST_MONTH = "2025-01"


def reconcilable_months(now: datetime | None = None) -> tuple[str, str]:
    """(first, last) month that can be reconciled: the partitions of ``month_end_job``."""
    return FIRST_MONTH, rec.month_of(now or datetime.now(UTC))


@dataclass
class MonthEnd:
    """One month reconciled: the lines (as filed), the summary per account and currency, and
    the orders of both systems they were built from (for the close pack's daily chart)."""

    month: str
    lines: pd.DataFrame
    summary: pd.DataFrame
    portal_orders: pd.DataFrame
    erp_orders: pd.DataFrame

    @property
    def unexplained(self) -> rec.UnexplainedDifferences:
        return unexplained(self.lines)

    @property
    def outcome_counts(self) -> dict[str, int]:
        return rec.outcome_counts(self.lines)

    @property
    def order_numbers(self) -> pd.Series:
        """portal_order_id -> the order number the buyer sees (``SL-100003``)."""
        orders = self.portal_orders.dropna(subset=["portal_order_id"])
        return orders.set_index("portal_order_id")["visible_id"]


def run_month_end(
    *,
    portal: Portal,
    erp: Erp,
    audit: AuditTrail,
    mappings: Mappings,
    month: str,
    run_id: str,
) -> MonthEnd:
    """Reconcile ``month`` (``YYYY-MM``, UTC) and file its lines in the audit store."""
    start, end = rec.month_bounds(month)
    portal_orders = portal_orders_between(
        portal, start - MARGIN, end + MARGIN, live_types=mappings.live_types
    )
    erp_orders = erp.read_sales_orders(start - MARGIN, end + MARGIN)
    waiting = audit.exceptions(status=["open", "approved", "ignored"])
    waiting = waiting[waiting["entity"] == "order"] if not waiting.empty else waiting
    who = approvers(audit)
    lines = rec.reconcile_month(
        month,
        portal_orders,
        erp_orders,
        _held_as_they_stand(waiting, who),
        tolerance=mappings.price_tolerance,
    )
    mismatched = lines.loc[
        lines["outcome"] == rec.Outcome.AMOUNT_MISMATCH.value, "portal_order_id"
    ].dropna()
    lines = explain_approved_differences(
        lines,
        audit.exceptions(status=["approved", "resolved"]),
        approvers=who,
        posted_erp_gross=posted_erp_gross(audit, mismatched.tolist()),
        order_numbers=portal_orders.set_index("portal_order_id")["visible_id"],
    )
    # The number the buyer sees, beside the portal id, for every screen and file that names
    # an order (the audit table keeps the contract's columns).
    numbers = portal_orders.dropna(subset=["portal_order_id"]).set_index("portal_order_id")[
        "visible_id"
    ]
    lines.insert(
        list(lines.columns).index("portal_order_id") + 1,
        "order_number",
        lines["portal_order_id"].map(numbers).astype(object),
    )
    audit.write_reconciliation_lines(month, lines, run_id)
    return MonthEnd(
        month=month,
        lines=lines,
        summary=rec.summarise(lines),
        portal_orders=portal_orders,
        erp_orders=erp_orders,
    )


def portal_orders_between(
    portal: Portal, start: datetime, end: datetime, *, live_types: Any
) -> pd.DataFrame:
    """Live and cancelled portal orders placed in [start, end), one row each."""
    from b2b_pipeline.connectors.sparklayer import purchases as wire

    accounts = {c.get("id"): c.get("accounting_id") for c in portal.iter_customers()}
    live = set(live_types)
    rows = []
    # updated_at >= placed_at, so asking for purchases updated since the start loses none.
    for p in portal.iter_purchases(updated_gte=start):
        updated = wire.purchase_updated_at(p)
        if wire.purchase_type(p) not in live or updated is None:
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


def _amount(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def approvers(audit: AuditTrail) -> pd.Series:
    """exception_id -> who approved it last, from the audit trail.

    Not the queue's ``resolved_by``: once the approved order is retried and posted, the queue
    row is resolved *by the pipeline*, which overwrites the name of the person who approved.
    """
    events = audit.approval_events()
    if events.empty:
        return pd.Series(dtype=object)
    return events.drop_duplicates("exception_id", keep="last").set_index("exception_id")[
        "approved_by"
    ]


def posted_erp_gross(audit: AuditTrail, order_ids: list[str]) -> pd.Series:
    """portal_order_id -> the ERP gross the pipeline posted (``order_postings``)."""
    if not order_ids:
        return pd.Series(dtype="float64")
    posted = audit.posted_erp_gross(order_ids)
    return posted.set_index("portal_order_id")["erp_gross"].astype("float64")


def _decided_price(decision: pd.Series) -> pd.Series:
    """'ERP' or 'portal' for each recorded price decision (JSON text)."""
    return (
        decision.fillna("")
        .astype(str)
        .str.contains("portal_price")
        .map({True: "portal", False: "ERP"})
    )


def _decision_words(decision: Any) -> str:
    try:
        data = json.loads(decision) if isinstance(decision, str) else dict(decision or {})
    except (TypeError, ValueError):
        data = {}
    if data.get("accept") == "portal_price":
        return "to be posted at the portal's price"
    if data.get("accept") == "erp_price":
        return "to be posted at the ERP's price"
    if data.get("account_code"):
        return f"to be posted to ERP account {data['account_code']}"
    if data.get("post_on_hold"):
        return "to be posted ON_HOLD"
    return "to be posted"


def _held_as_they_stand(waiting: pd.DataFrame, who: pd.Series) -> pd.DataFrame:
    """The queue as the comparison quotes it: an approved exception's message is replaced by
    its approval (who, what), so the line no longer tells finance to approve what it did, and
    an ignored one's by who ignored it, when and why."""
    if waiting.empty or "status" not in waiting:
        return waiting
    waiting = waiting.copy()
    ignored = waiting["status"] == "ignored"
    if ignored.any():
        when = pd.to_datetime(waiting.loc[ignored, "updated_at"], errors="coerce", utc=True)
        why = waiting.loc[ignored, "resolution_note"].fillna("").astype(str).str.strip()
        waiting.loc[ignored, "message"] = (
            "ignored by "
            + waiting.loc[ignored, "resolved_by"].fillna("an operator").astype(str)
            + when.dt.strftime(" on %Y-%m-%d").fillna("")
            + why.where(why == "", ": " + why.str.rstrip("."))
            + "; it is closed and will not be posted to the ERP ("
            + waiting.loc[ignored, "exception_id"].astype(str)
            + ")."
        )
    approved = waiting["status"] == "approved"
    if not approved.any():
        return waiting
    ids = waiting.loc[approved, "exception_id"]
    names = ids.map(who) if not who.empty else pd.Series(index=ids.index, dtype=object)
    names = names.fillna(waiting.loc[approved, "resolved_by"]).fillna("finance")
    words = waiting.loc[approved, "decision"].map(_decision_words)
    waiting.loc[approved, "message"] = (
        "approved by " + names + " " + words + "; it waits for its retry (" + ids + ")."
    )
    return waiting


def explain_approved_differences(
    lines: pd.DataFrame,
    decided: pd.DataFrame,
    approvers: pd.Series | None = None,
    posted_erp_gross: pd.Series | None = None,
    order_numbers: pd.Series | None = None,
) -> pd.DataFrame:
    """Mark amount differences finance approved at posting time: still an AMOUNT_MISMATCH, by
    contract, but explained, and the reason says who approved which price (``approvers``:
    exception_id -> name, see :func:`approvers`; without it, the queue's ``resolved_by``),
    the two totals, and that nothing is left to do.

    With ``posted_erp_gross`` (portal_order_id -> ERP gross when posted), the approval covers
    only the amount that was posted: an approved order whose ERP total was edited afterwards is
    unexplained again, and its reason says so, so an approval never hides a later change.
    ``order_numbers`` (portal_order_id -> visible number) names the order as the buyer does."""
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
        approved = lines.loc[hit]
        keys = approved["portal_order_id"]
        ids = keys.map(by_order["exception_id"])
        who = keys.map(by_order["resolved_by"])
        if approvers is not None and not approvers.empty:
            who = ids.map(approvers).fillna(who)
        who = who.fillna("finance")
        which = _decided_price(keys.map(by_order["decision"]))
        name = keys.map(order_numbers) if order_numbers is not None else keys
        name = name.where(name.notna(), keys).astype(str)
        currency = approved["currency"].fillna("").astype(str)
        lines.loc[hit, "reason"] = (
            "Difference approved by "
            + who
            + ": posted at the "
            + which
            + " price ("
            + ids
            + "). ERP order "
            # As on the invoice ("12"), whether the lines hold numbers or the stored text.
            + pd.to_numeric(approved["erp_order_no"], errors="coerce").astype("Int64").astype(str)
            + " totals "
            + approved["erp_gross"].map("{:.2f}".format)
            + " "
            + currency
            + ", portal order "
            + name
            + " totals "
            + approved["portal_gross"].map("{:.2f}".format)
            + " "
            + currency
            + " (difference "
            + approved["difference"].map("{:.2f}".format)
            + "): nothing left to do."
        )
        lines.loc[hit, "approved_difference"] = True
    return lines


def unexplained(lines: pd.DataFrame) -> rec.UnexplainedDifferences:
    """What finance still has to look at: not matched, not queued, not an approved difference."""
    if "approved_difference" in lines:
        lines = lines[~lines["approved_difference"].astype(bool)]
    return rec.unexplained(lines)
