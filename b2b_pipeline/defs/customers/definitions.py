"""Customers: ERP → portal, credit hold and release."""

import dagster as dg

from b2b_pipeline.defs.customers import assets, checks, schedules, sensors

defs = dg.Definitions(
    assets=[assets.erp_customers, assets.portal_customer_groups, assets.portal_customers],
    asset_checks=dg.load_asset_checks_from_modules([checks]),
    jobs=[assets.customer_sync_job],
    schedules=[schedules.customer_sync_schedule],
    sensors=[sensors.erp_customer_changes_sensor],
)
