"""The order promises, proved after every run: the asset checks of ``defs/orders/checks.py``
call these, and so can a script or the console.

- every live order seen is exactly one of posted in the ERP or held in the queue;
- every live order **in the portal** is posted, queued, or not yet reached by the cursor,
  counted from the portal and the ERP themselves (:func:`portal_conservation`), so a purchase
  the pipeline never tracked (one lost while paging) is found too;
- no order on account terms waits in the ERP as pending payment;
- no quote, cart, unconfirmed or cancelled purchase is in the ERP;
- every posted order's ERP total matches the portal's, or finance approved the difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pandas as pd

from b2b_pipeline.connectors.sparklayer import purchases as wire
from b2b_pipeline.flows.order_intake import DEFAULT_LOOKBACK
from b2b_pipeline.flows.ports import AuditTrail, Erp, Portal, SyncStateStore

if TYPE_CHECKING:
    from b2b_pipeline.config.mappings import Mappings


def _tracked_live(tracking: pd.DataFrame, mappings: Mappings) -> pd.Series:
    """A tracked purchase of a live type that was not cancelled when last seen."""
    return tracking["purchase_type"].isin(mappings.live_types) & ~tracking["cancelled"].eq(True)


def _queued_orders(audit: AuditTrail) -> set[str]:
    """Orders held in the queue: waiting, or closed by a person who ignored them.

    An exception a person ignored still accounts for its order: the decision (who, why) is the
    order's outcome, and the intake never posts it afterwards. A refused write-back is about an
    order already posted: only its ERP number waits to be written to the portal.
    """
    queue = audit.exceptions()
    if queue.empty:
        return set()
    held = (
        (queue["entity"] == "order")
        & queue["status"].isin(["open", "approved", "ignored"])
        & (queue["reason_code"] != "WRITE_BACK_REFUSED")
    )
    return set(queue.loc[held, "entity_key"].astype(str))


@dataclass(frozen=True)
class Conservation:
    """Every live order seen is exactly one of posted in the ERP or held in the queue."""

    live_orders_seen: int
    posted: int
    queued: int
    posted_and_queued: list[str]
    neither_posted_nor_queued: list[str]

    @property
    def holds(self) -> bool:
        return not self.posted_and_queued and not self.neither_posted_nor_queued


def order_conservation(
    *, erp: Erp, audit: AuditTrail, state: SyncStateStore, mappings: Mappings
) -> Conservation:
    tracking = state.order_tracking()
    tracking = tracking[_tracked_live(tracking, mappings)]
    ids = set(tracking["portal_order_id"].astype(str))
    in_erp = set(erp.existing_orders(sorted(ids))["external_ref"].astype(str)) if ids else set()
    queued = _queued_orders(audit)
    return Conservation(
        live_orders_seen=len(ids),
        posted=len(ids & in_erp),
        queued=len(ids & queued),
        posted_and_queued=sorted(ids & in_erp & queued),
        neither_posted_nor_queued=sorted(ids - in_erp - queued),
    )


# How far back the portal-side count looks (purchases changed since then). It runs every hour,
# so an order lost two days ago has been reported some 48 times before it leaves the window.
PORTAL_CONSERVATION_WINDOW = timedelta(days=2)


@dataclass(frozen=True)
class PortalConservation:
    """Live portal orders changed since ``since``, each posted, queued or not yet reached."""

    since: datetime
    live_in_portal: int
    posted: int
    queued: int
    not_yet_reached: int
    lost: list[str]
    posted_and_queued: list[str]

    @property
    def holds(self) -> bool:
        return not self.lost and not self.posted_and_queued


def portal_conservation(
    *,
    portal: Portal,
    erp: Erp,
    audit: AuditTrail,
    state: SyncStateStore,
    mappings: Mappings,
    since: datetime | None = None,
) -> PortalConservation:
    """Count the promise from the systems themselves, not from the pipeline's tracking.

    Every live purchase in the portal (a live type, not cancelled) changed since ``since``
    (default: :data:`PORTAL_CONSERVATION_WINDOW` ago) is in the ERP (its ``external_ref``), or
    held in the queue (waiting, or ignored by a person), or not yet reached: changed since the
    durable cursor minus the intake's look-back, which the next run reads again. Anything else
    was lost: the pipeline moved past it.
    """
    since = since or datetime.now(UTC) - PORTAL_CONSERVATION_WINDOW
    cursor = state.order_cursor()
    live = set(mappings.live_types)
    keys: dict[str, tuple[pd.Timestamp, str]] = {}
    for purchase in portal.iter_purchases(updated_gte=since):
        pid = wire.purchase_id(purchase)
        updated = wire.purchase_updated_at(purchase)
        if not pid or updated is None:
            continue  # unreadable: the intake queues it as malformed, with the payload
        if wire.purchase_type(purchase) in live and not wire.is_cancelled(purchase):
            keys[pid] = (updated, pid)
    ids = sorted(keys)
    in_erp = set(erp.existing_orders(ids)["external_ref"].astype(str)) if ids else set()
    queue = audit.exceptions_for("order", ids, status=["open", "approved", "ignored"])
    queued = (
        set(queue.loc[queue["reason_code"] != "WRITE_BACK_REFUSED", "entity_key"].astype(str))
        if not queue.empty
        else set()
    )
    # The next run reads everything changed since the cursor minus the look-back, and handles
    # a purchase again when its version is newer than the one it handled: a quote confirmed
    # while a run was reading (that run kept the quote's version and moved the cursor past the
    # confirmation) is still reached. Only what is older than that edge and unaccounted for
    # was lost.
    edge = (
        pd.Timestamp(cursor.updated_at) - DEFAULT_LOOKBACK
        if cursor.updated_at is not None
        else None
    )
    waiting = {pid for pid, (updated, _) in keys.items() if edge is None or updated >= edge}
    accounted = in_erp | queued
    return PortalConservation(
        since=since,
        live_in_portal=len(ids),
        posted=len(in_erp),
        queued=len(queued - in_erp),
        not_yet_reached=len(waiting - accounted),
        lost=sorted(set(ids) - accounted - waiting),
        posted_and_queued=sorted(in_erp & queued),
    )


def on_account_orders_pending_payment(erp: Erp) -> int:
    """Orders on account terms waiting in the ERP as PENDING_PAYMENT (nothing would confirm
    them, and the warehouse would never pick them): must be none."""
    return erp.count_sales_orders(
        status="PENDING_PAYMENT", payment_methods=list(wire.PAY_LATER_METHODS)
    )


@dataclass(frozen=True)
class DraftsInErp:
    not_live_purchases: int
    in_erp: list[str]


def drafts_in_erp(*, erp: Erp, state: SyncStateStore, mappings: Mappings) -> DraftsInErp:
    """Quotes, carts, unconfirmed or awaiting-approval orders, and purchases cancelled before
    they were posted, that are in the ERP anyway: must be none."""
    tracking = state.order_tracking()
    not_live = tracking[~_tracked_live(tracking, mappings)]
    ids = not_live["portal_order_id"].astype(str).tolist()
    in_erp = set(erp.existing_orders(ids)["external_ref"].astype(str)) if ids else set()
    # A purchase cancelled after it was posted is a reconciliation matter, not a picking error:
    # only purchases that were never live when handled count.
    never_live = set(not_live.loc[not_live["outcome"] == "filtered", "portal_order_id"])
    return DraftsInErp(not_live_purchases=len(ids), in_erp=sorted(in_erp & never_live))


@dataclass(frozen=True)
class TotalsCheck:
    posted_orders: int
    mismatched: list[str]


def totals_not_matching_portal(*, audit: AuditTrail, mappings: Mappings) -> TotalsCheck:
    """Posted orders whose ERP total differs from the portal's checkout total by more than the
    price tolerance, unless finance approved the price difference."""
    postings = audit.order_postings()
    if postings.empty:
        return TotalsCheck(posted_orders=0, mismatched=[])
    queue = audit.exceptions()
    approved = (
        set(
            queue.loc[
                (queue["reason_code"] == "PRICE_MISMATCH")
                & queue["status"].isin(["approved", "resolved"]),
                "entity_key",
            ]
        )
        if not queue.empty
        else set()
    )
    diff = (postings["erp_gross"] - postings["portal_gross"]).abs()
    over = diff > mappings.price_tolerance + 1e-9
    bad = postings[over & ~postings["portal_order_id"].isin(approved)]
    return TotalsCheck(
        posted_orders=len(postings), mismatched=bad["portal_order_id"].astype(str).tolist()
    )
