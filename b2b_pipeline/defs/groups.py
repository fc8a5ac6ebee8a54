"""Asset group names, one per part of the operating model (the Dagster UI groups by them)."""

ERP = "erp"  # extracts read from the system of record
PORTAL_SYNC = "portal_sync"  # what the pipeline writes to SparkLayer
ORDERS = "orders"  # portal → ERP
FINANCE = "finance"  # month-end reconciliation
