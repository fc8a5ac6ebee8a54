"""How fresh the portal's stock must be, and the stock schedule it is measured against.

The stock sync runs every :data:`STOCK_SYNC_MINUTES` minutes (``inventory_sync_schedule``), and
every run materialises ``portal_stock_levels``, whether or not a level changed. So the asset's
last materialisation is the last time the portal's stock was brought up to date, and
:data:`STOCK_FRESHNESS` (a Dagster ``FreshnessPolicy``, which superseded freshness checks in
Dagster 1.12) says how old it may get:

- **Warn** after one interval plus :data:`GRACE`: one run is late (a slow portal, a busy queue).
- **Fail** after two intervals: a run was missed and the next is late too; buyers may be
  ordering against stock that no longer exists. One missed run alone is tolerated, as the
  accepted lag of batching stock is.

Dagster's freshness daemon (started by ``dagster dev`` / ``dg dev`` with the other daemons)
evaluates the policy about every 30 seconds, so a stopped schedule, a dead daemon or runs that
keep failing turn the asset's freshness to Failed in the UI on their own; nothing has to run
for it to fail. (The former ``inventory_is_fresh`` check ran only right after a stock sync, in
the same run, so it could never see a sync that had not happened.)
"""

from datetime import timedelta

import dagster as dg

STOCK_SYNC_MINUTES = 15
STOCK_SYNC_CRON = f"*/{STOCK_SYNC_MINUTES} * * * *"
# A run starts on the tick and takes seconds to a few minutes: this much lateness is normal.
GRACE = timedelta(minutes=5)

STOCK_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=2 * timedelta(minutes=STOCK_SYNC_MINUTES),
    warn_window=timedelta(minutes=STOCK_SYNC_MINUTES) + GRACE,
)
