"""The one Definitions object: every flow, check, schedule and sensor, and the resources.

``workspace.yaml`` loads this module. Each business domain registers its own definitions in
``defs/<domain>/definitions.py``; this file only merges them and binds the resources chosen
from the environment (``defs/resources.py``). The mapping file is validated here, at load, so
the pipeline refuses to start on an invalid one (the error names the key and the problem).
"""

from __future__ import annotations

import dagster as dg

from b2b_pipeline.config.mappings import mappings_from_env
from b2b_pipeline.defs.groups import ERP, ORDERS, PORTAL_SYNC
from b2b_pipeline.defs.resources import build_resources


def build_definitions() -> dg.Definitions:
    from b2b_pipeline.defs.customers.definitions import defs as customers
    from b2b_pipeline.defs.finance.definitions import defs as finance
    from b2b_pipeline.defs.inventory.definitions import defs as inventory
    from b2b_pipeline.defs.monitoring.definitions import defs as monitoring
    from b2b_pipeline.defs.orders.definitions import defs as orders
    from b2b_pipeline.defs.pricing.definitions import defs as pricing

    domain_defs = [customers, pricing, inventory, orders, finance, monitoring]
    # What `b2b-pipeline run` does: master data to the portal first, then orders to the ERP
    # (the asset graph orders them), exactly as the schedules and sensors would.
    full_cycle_job = dg.define_asset_job(
        "full_cycle_job",
        selection=dg.AssetSelection.groups(ERP, PORTAL_SYNC, ORDERS),
        description="One full cycle: customers, prices and stock to the portal, then orders.",
    )
    return dg.Definitions.merge(
        *domain_defs,
        dg.Definitions(
            jobs=[full_cycle_job],
            resources=build_resources(),
            # Every job's steps are I/O-bound (the portal's rate limit, the ERP, the audit
            # file) and small: one process per run. The multiprocess default started a Python
            # process per step, 10-34 s each on a busy 2-core machine, for work of 1-9 s.
            executor=dg.in_process_executor,
        ),
    )


mappings_from_env()  # refuse to load on an invalid mapping file
defs = build_definitions()
