"""Pricing: ERP price lists and quantity breaks → portal, and the price probe."""

import dagster as dg

from b2b_pipeline.defs.pricing import assets, checks, schedules, sensors

defs = dg.Definitions(
    assets=[
        assets.erp_products,
        assets.erp_price_data,
        assets.portal_price_lists,
        assets.portal_price_probe,
    ],
    asset_checks=dg.load_asset_checks_from_modules([checks]),
    jobs=[assets.price_sync_job, assets.price_probe_job],
    schedules=[schedules.nightly_price_comparison_schedule, schedules.price_probe_schedule],
    sensors=[sensors.erp_price_changes_sensor],
)
