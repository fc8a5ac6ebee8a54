"""``b2b-pipeline run``: one full cycle, headless and synchronous, with a summary.

Exit status (contracts/command-line.md): 0 when the cycle ran and every check passed, queued
exceptions included (they are business outcomes); 1 when it ran and a check found a problem
(e.g. an ERP customer group with no portal group); 2 when a system could not be reached or a
step failed, in one line naming the system.
"""

from __future__ import annotations

import sys

import click

from b2b_pipeline.cli import paths
from b2b_pipeline.cli.output import emit, format_option


def _reach_systems() -> None:
    """Reach the ERP and the portal once before the run.

    A run's independent steps each retry an unreachable portal for several seconds before
    giving up (Dagster runs the other branches after one fails), so an outage found here is
    reported once, in one line naming the system, instead of after every step's retries.
    """
    from b2b_pipeline.connectors.erp.gateway import ErpGateway
    from b2b_pipeline.connectors.sparklayer.client import SparkLayerClient

    settings = paths.settings()
    gateway = ErpGateway(settings.erp_database_url)
    try:
        gateway.ping()
    finally:
        gateway.dispose()
    with SparkLayerClient(
        settings.sparklayer_base_url,
        settings.sparklayer_site_id,
        settings.sparklayer_client_id,
        settings.sparklayer_client_secret,
        requests_per_second=settings.sparklayer_requests_per_second,
    ) as client:
        client.list_customer_groups()


@click.command()
@format_option
def run(fmt: str) -> None:
    """Master data to the portal, then orders to the ERP, exceptions and audit: what the
    schedules and sensors do, at once. Queued exceptions are business outcomes (exit 0); a
    failed check exits 1; an unreachable system exits 2."""
    _reach_systems()
    click.echo("Running one full cycle (customers, prices, stock, then orders) …", err=True)
    from b2b_pipeline.cli.runner import run_job  # Dagster only for commands that run a job

    summary = run_job("full_cycle_job")
    failed = [name for name, passed in summary.checks.items() if not passed]
    if fmt == "json":
        emit(
            {
                "success": summary.success,
                "run_id": summary.run_id,
                "assets": summary.assets,
                "checks": summary.checks,
                "failed_checks": {name: summary.check_problems.get(name, "") for name in failed},
                "error": summary.error,
            },
            fmt,
        )
    else:
        for asset, metadata in summary.assets.items():
            numbers = ", ".join(
                f"{k}={v}" for k, v in metadata.items() if isinstance(v, int | float)
            )
            click.echo(f"{asset:28} {numbers}")
        click.echo(
            f"checks: {len(summary.checks) - len(failed)} passed"
            + (f", FAILED: {', '.join(failed)}" if failed else "")
        )
        for name in failed:
            if summary.check_problems.get(name):
                click.echo(f"  {name}: {summary.check_problems[name]}")
    if not summary.success:
        click.echo(f"b2b-pipeline: the run failed: {summary.error}", err=True)
        sys.exit(2)
    if failed:
        sys.exit(1)
