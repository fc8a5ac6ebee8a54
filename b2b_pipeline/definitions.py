"""The code location: every asset, check, job, schedule and sensor, and the resources.

``dg dev`` / ``dg check defs`` find this module through ``[tool.dg]`` in ``pyproject.toml``
(``workspace.yaml`` points ``dagster dev`` at it too). Dagster's own loader reads the
``defs/`` folder: each domain folder (``customers``, ``pricing``, ``inventory``, ``orders``,
``finance``, ``monitoring``) holds its assets, checks, schedules and sensors at module level,
and ``defs/resources.py`` binds the systems chosen from the environment. What applies to
everything is applied here, once: the owners and the domain tag of each asset, the executor,
and the one job that spans the domains. The mapping file is validated at load, so the code
location refuses to start on an invalid one (the error names the key and the problem).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from b2b_pipeline.config.mappings import mappings_from_env
from b2b_pipeline.defs.groups import ERP, FINANCE, ORDERS, PORTAL_SYNC

# Who answers for each part of the operating model (shown on every asset in the UI).
OWNERS = {
    ERP: ["team:ecommerce"],
    PORTAL_SYNC: ["team:ecommerce"],
    ORDERS: ["team:operations"],
    FINANCE: ["team:finance"],
}


def _policy(spec: dg.AssetSpec) -> dg.AssetSpec:
    group = spec.group_name or ""
    spec = spec.replace_attributes(owners=list(spec.owners) or OWNERS.get(group, []))
    return spec.merge_attributes(tags={"domain": group}) if group else spec


# What `b2b-pipeline run` does: master data to the portal first, then orders to the ERP (the
# asset graph orders them), exactly as the schedules and sensors would.
full_cycle_job = dg.define_asset_job(
    "full_cycle_job",
    selection=dg.AssetSelection.groups(ERP, PORTAL_SYNC, ORDERS),
    description="One full cycle: customers, prices and stock to the portal, then orders.",
)


def build_definitions() -> dg.Definitions:
    """The whole graph, from the ``defs/`` folder, with the cross-cutting policy applied."""
    loaded = dg.load_from_defs_folder(path_within_project=Path(__file__).resolve().parent)
    # A module that imports another's asset exposes it too: the loader lists such an asset
    # once per module, which is harmless until the policy maps each listing to a new object.
    assets = list({id(asset): asset for asset in loaded.assets or []}.values())
    return dg.Definitions.merge(
        dg.Definitions(
            assets=assets,
            asset_checks=loaded.asset_checks,
            schedules=loaded.schedules,
            sensors=loaded.sensors,
            jobs=loaded.jobs,
            resources=loaded.resources,
        ).map_asset_specs(func=_policy),
        dg.Definitions(
            jobs=[full_cycle_job],
            # Every job's steps are I/O-bound (the portal's rate limit, the ERP, the audit
            # file) and small: one process per run. The multiprocess default started a Python
            # process per step, 10-34 s each on a busy 2-core machine, for work of 1-9 s.
            executor=dg.in_process_executor,
        ),
    )


@dg.definitions
def defs() -> dg.Definitions:
    mappings_from_env()  # refuse to load on an invalid mapping file
    return build_definitions()
