"""Orders: portal → ERP."""

import dagster as dg

from b2b_pipeline.defs.orders import assets, checks, sensors

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets]),
    asset_checks=dg.load_asset_checks_from_modules([checks]),
    jobs=[assets.order_intake_job],
    sensors=[sensors.new_portal_orders_sensor],
)
