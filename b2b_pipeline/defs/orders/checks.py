"""Order asset checks: the four promises the order flow makes, proved after every run.

Each check is a reader (the ERP, the audit file's queue and sync state): the promise itself is
computed in ``flows/order_promises.py``, beside the flow that keeps it; here it becomes an
``AssetCheckResult`` with the figures a person needs to act.
"""

# No ``from __future__ import annotations``: Dagster reads the resource annotations.
import dagster as dg

from b2b_pipeline.defs.orders.assets import ERP_SALES_ORDERS
from b2b_pipeline.defs.resources import AuditResource, ErpResource, MappingsResource
from b2b_pipeline.flows.order_promises import (
    drafts_in_erp,
    on_account_orders_pending_payment,
    order_conservation,
    totals_not_matching_portal,
)

# Examples listed in the check's metadata (the counts are always complete).
EXAMPLES = 50


@dg.asset_check(
    asset=ERP_SALES_ORDERS,
    description="Conservation: every live portal order seen is exactly one of posted in the ERP "
    "or held in the exception queue (waiting, or ignored by a person's recorded decision).",
)
def every_live_order_posted_or_queued(
    erp: ErpResource, audit: AuditResource, mappings: MappingsResource
) -> dg.AssetCheckResult:
    found = order_conservation(
        erp=erp.gateway, audit=audit.store, state=audit.state, mappings=mappings.mappings
    )
    return dg.AssetCheckResult(
        passed=found.holds,
        metadata={
            "live_orders_seen": found.live_orders_seen,
            "posted": found.posted,
            "queued": found.queued,
            "posted_and_queued": dg.MetadataValue.json(found.posted_and_queued[:EXAMPLES]),
            "neither_posted_nor_queued": dg.MetadataValue.json(
                found.neither_posted_nor_queued[:EXAMPLES]
            ),
        },
    )


@dg.asset_check(
    asset=ERP_SALES_ORDERS,
    description="No order on account terms (Pay on Account, Pay by Invoice) waits in the ERP as "
    "PENDING_PAYMENT: nothing would ever confirm it and the warehouse would never pick it.",
)
def no_on_account_order_pending_payment(erp: ErpResource) -> dg.AssetCheckResult:
    stuck = on_account_orders_pending_payment(erp.gateway)
    return dg.AssetCheckResult(passed=stuck == 0, metadata={"stuck_orders": stuck})


@dg.asset_check(
    asset=ERP_SALES_ORDERS,
    description="No quote, cart, unconfirmed or awaiting-approval order, and no purchase "
    "cancelled before it was posted, is in the ERP.",
)
def no_draft_or_quote_in_erp(
    erp: ErpResource, audit: AuditResource, mappings: MappingsResource
) -> dg.AssetCheckResult:
    found = drafts_in_erp(erp=erp.gateway, state=audit.state, mappings=mappings.mappings)
    return dg.AssetCheckResult(
        passed=not found.in_erp,
        metadata={
            "not_live_purchases": found.not_live_purchases,
            "in_erp": dg.MetadataValue.json(found.in_erp[:EXAMPLES]),
        },
    )


@dg.asset_check(
    asset=ERP_SALES_ORDERS,
    description="Every posted order's ERP total equals the portal's checkout total (within the "
    "price tolerance), unless finance approved a price difference.",
)
def erp_totals_match_portal(
    audit: AuditResource, mappings: MappingsResource
) -> dg.AssetCheckResult:
    found = totals_not_matching_portal(audit=audit.store, mappings=mappings.mappings)
    return dg.AssetCheckResult(
        passed=not found.mismatched,
        metadata={
            "posted_orders": found.posted_orders,
            "mismatched": len(found.mismatched),
            "examples": dg.MetadataValue.json(found.mismatched[:20]),
        },
    )
