"""Stock checks: the portal's stock is fresh."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from b2b_pipeline.defs.inventory.assets import portal_stock_levels
from b2b_pipeline.defs.resources import AuditResource

# Two schedule intervals: one missed run is tolerated, two mean stock is going stale.
MAX_STOCK_AGE = timedelta(minutes=30)


@dg.asset_check(
    asset=portal_stock_levels,
    description=f"Stock was pushed within the last {MAX_STOCK_AGE.seconds // 60} minutes, or "
    "nothing has changed since the last push.",
)
def inventory_is_fresh(audit: AuditResource) -> dg.AssetCheckResult:
    from b2b_pipeline.connectors.sync_state import SyncState

    store = audit.get_store()
    state = SyncState(store.path)
    state.ensure_schema()
    last_push = state.last_inventory_push()
    last_sync = store.last_sync_at("inventory")
    latest = max((t for t in (last_push, last_sync) if t is not None and t == t), default=None)
    age = datetime.now(UTC) - latest if latest is not None else None
    return dg.AssetCheckResult(
        passed=age is not None and age <= MAX_STOCK_AGE,
        metadata={"minutes_since_last_sync": round(age.total_seconds() / 60, 1) if age else -1},
    )
