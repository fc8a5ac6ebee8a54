"""The one Definitions object: every flow, check, schedule and sensor, and the resources.

``workspace.yaml`` loads this module. Each business domain registers its own definitions in
``defs/<domain>/definitions.py``; this file only merges them and binds the resources chosen
from the environment (``defs/resources.py``). The mapping file is validated here, at load, so
the pipeline refuses to start on an invalid one (the error names the key and the problem).
"""

from __future__ import annotations

import dagster as dg

from b2b_pipeline.config.mappings import mappings_from_env
from b2b_pipeline.defs.resources import build_resources


def build_definitions() -> dg.Definitions:
    from b2b_pipeline.defs.orders.definitions import defs as orders

    domain_defs = [orders]
    for module in (
        "b2b_pipeline.defs.customers.definitions",
        "b2b_pipeline.defs.pricing.definitions",
        "b2b_pipeline.defs.inventory.definitions",
        "b2b_pipeline.defs.finance.definitions",
    ):
        try:
            domain_defs.append(__import__(module, fromlist=["defs"]).defs)
        except ModuleNotFoundError:
            continue
    return dg.Definitions.merge(*domain_defs, dg.Definitions(resources=build_resources()))


mappings_from_env()  # refuse to load on an invalid mapping file
defs = build_definitions()
