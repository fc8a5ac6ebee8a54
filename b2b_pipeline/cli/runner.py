"""Runs Dagster jobs in-process for the command line, on the same definitions as the UI.

A CLI run goes through exactly the assets, checks and resources the schedules and sensors use,
and, when ``DAGSTER_HOME`` is set, is recorded in the same instance, so it shows in the UI.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import dagster as dg


@dataclass
class JobSummary:
    success: bool
    run_id: str
    # asset name -> its materialization metadata (numbers and short texts)
    assets: dict[str, dict[str, Any]] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)
    error: str | None = None
    values: dict[str, Any] = field(default_factory=dict)


def _instance() -> dg.DagsterInstance:
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def _plain(value: Any) -> Any:
    inner = getattr(value, "value", value)
    if isinstance(inner, int | float | str | bool) or inner is None:
        return inner
    if isinstance(inner, dict | list):
        return inner
    return str(inner)


def run_job(
    job_name: str,
    run_config: dict[str, Any] | None = None,
    *,
    partition_key: str | None = None,
    outputs: tuple[str, ...] = (),
) -> JobSummary:
    """Run a job of the definitions in this process; ``outputs`` names assets whose values
    the caller wants back (e.g. the reconciliation for the close pack)."""
    from b2b_pipeline.definitions import defs

    job = defs.resolve_job_def(job_name)
    with _instance() as instance:
        result = job.execute_in_process(
            run_config=run_config or {},
            instance=instance,
            raise_on_error=False,
            partition_key=partition_key,
        )
    summary = JobSummary(success=result.success, run_id=result.run_id)
    if result.success:
        summary.values = {name: result.output_for_node(name) for name in outputs}
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        name = materialization.asset_key.to_user_string()
        summary.assets[name] = {k: _plain(v) for k, v in materialization.metadata.items()}
    for event in result.get_asset_check_evaluations():
        summary.checks[f"{event.asset_key.to_user_string()}:{event.check_name}"] = event.passed
    if not result.success:
        failures = [
            e.step_failure_data.error.message.strip().splitlines()[-1]
            for e in result.all_events
            if e.is_step_failure and e.step_failure_data and e.step_failure_data.error
        ]
        summary.error = failures[0] if failures else "the run failed"
    return summary
