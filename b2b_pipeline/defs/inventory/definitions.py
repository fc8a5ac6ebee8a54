"""Inventory: ERP stock → portal, on a schedule."""

import dagster as dg

from b2b_pipeline.defs.inventory import assets, checks, schedules

defs = dg.Definitions(
    assets=[assets.erp_inventory, assets.portal_stock_levels],
    asset_checks=dg.load_asset_checks_from_modules([checks]),
    jobs=[assets.inventory_sync_job],
    schedules=[schedules.inventory_sync_schedule],
)
