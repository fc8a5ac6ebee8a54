"""Order asset checks: the four promises the order flow makes, proved after every run."""

import dagster as dg
import pandas as pd

from b2b_pipeline.connectors.sparklayer.purchases import PAY_LATER_METHODS
from b2b_pipeline.defs.orders.assets import erp_sales_orders
from b2b_pipeline.defs.resources import AuditResource, ErpResource, MappingsResource


def _tracking(audit: AuditResource) -> pd.DataFrame:
    from b2b_pipeline.connectors.sync_state import SyncState

    state = SyncState(audit.get_store().path)
    state.ensure_schema()
    return state.order_tracking()


def _is_live(tracking: pd.DataFrame, mappings: MappingsResource) -> pd.Series:
    """A tracked purchase of a live type that was not cancelled when last seen."""
    live_types = mappings.load().live_types
    return tracking["purchase_type"].isin(live_types) & ~tracking["cancelled"].eq(True)


@dg.asset_check(
    asset=erp_sales_orders,
    description="Conservation: every live portal order seen is exactly one of posted in the ERP "
    "or held in the exception queue (waiting, or ignored by a person's recorded decision).",
)
def every_live_order_posted_or_queued(
    erp: ErpResource, audit: AuditResource, mappings: MappingsResource
) -> dg.AssetCheckResult:
    tracking = _tracking(audit)
    tracking = tracking[_is_live(tracking, mappings)]
    ids = tracking["portal_order_id"].astype(str).tolist()
    gateway = erp.get_gateway()
    in_erp = set(gateway.existing_orders(ids)["external_ref"].astype(str)) if ids else set()
    queue = audit.get_store().exceptions()
    # An exception a person ignored still accounts for its order: the decision (who, why) is
    # the order's outcome, and the intake never posts it afterwards.
    queued = (
        set(
            queue.loc[
                (queue["entity"] == "order")
                & queue["status"].isin(["open", "approved", "ignored"])
                # Posted already; only its ERP number waits to be written back to the portal.
                & (queue["reason_code"] != "WRITE_BACK_REFUSED"),
                "entity_key",
            ].astype(str)
        )
        if not queue.empty
        else set()
    )
    both = sorted(set(ids) & in_erp & queued)
    neither = sorted(set(ids) - in_erp - queued)
    return dg.AssetCheckResult(
        passed=not both and not neither,
        metadata={
            "live_orders_seen": len(ids),
            "posted": len(set(ids) & in_erp),
            "queued": len(set(ids) & queued),
            "posted_and_queued": dg.MetadataValue.json(both[:50]),
            "neither_posted_nor_queued": dg.MetadataValue.json(neither[:50]),
        },
    )


@dg.asset_check(
    asset=erp_sales_orders,
    description="No order on account terms (Pay on Account, Pay by Invoice) waits in the ERP as "
    "PENDING_PAYMENT: nothing would ever confirm it and the warehouse would never pick it.",
)
def no_on_account_order_pending_payment(erp: ErpResource) -> dg.AssetCheckResult:
    stuck = erp.get_gateway().count_sales_orders(
        status="PENDING_PAYMENT", payment_methods=list(PAY_LATER_METHODS)
    )
    return dg.AssetCheckResult(passed=stuck == 0, metadata={"stuck_orders": stuck})


@dg.asset_check(
    asset=erp_sales_orders,
    description="No quote, cart, unconfirmed or awaiting-approval order, and no purchase "
    "cancelled before it was posted, is in the ERP.",
)
def no_draft_or_quote_in_erp(
    erp: ErpResource, audit: AuditResource, mappings: MappingsResource
) -> dg.AssetCheckResult:
    tracking = _tracking(audit)
    not_live = tracking[~_is_live(tracking, mappings)]
    ids = not_live["portal_order_id"].astype(str).tolist()
    existing = (
        erp.get_gateway().existing_orders(ids) if ids else pd.DataFrame(columns=["external_ref"])
    )
    # A purchase cancelled after it was posted is a reconciliation matter, not a picking error:
    # the check looks at purchases that were never live when handled.
    never_live = not_live[not_live["outcome"] == "filtered"]
    wrong = sorted(set(existing["external_ref"].astype(str)) & set(never_live["portal_order_id"]))
    return dg.AssetCheckResult(
        passed=not wrong,
        metadata={"not_live_purchases": len(ids), "in_erp": dg.MetadataValue.json(wrong[:50])},
    )


@dg.asset_check(
    asset=erp_sales_orders,
    description="Every posted order's ERP total equals the portal's checkout total (within the "
    "price tolerance), unless finance approved a price difference.",
)
def erp_totals_match_portal(
    audit: AuditResource, mappings: MappingsResource
) -> dg.AssetCheckResult:
    store = audit.get_store()
    tolerance = mappings.load().price_tolerance
    postings = store.order_postings()
    if postings.empty:
        return dg.AssetCheckResult(passed=True, metadata={"posted_orders": 0})
    queue = store.exceptions()
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
    bad = postings[(diff > tolerance + 1e-9) & ~postings["portal_order_id"].isin(approved)]
    return dg.AssetCheckResult(
        passed=bad.empty,
        metadata={
            "posted_orders": len(postings),
            "mismatched": len(bad),
            "examples": dg.MetadataValue.json(bad["portal_order_id"].head(20).tolist()),
        },
    )
