"""``b2b-pipeline run``: one full cycle now, headless and synchronous."""

from __future__ import annotations

import sys

import click

from b2b_pipeline.cli.output import emit, format_option
from b2b_pipeline.cli.runner import run_job


@click.command()
@format_option
def run(fmt: str) -> None:
    """Master data to the portal, then orders to the ERP, exceptions and audit: what the
    schedules and sensors do, at once. Queued exceptions are business outcomes (exit 0)."""
    click.echo("Running one full cycle (customers, prices, stock, then orders) …", err=True)
    summary = run_job("full_cycle_job")
    if fmt == "json":
        emit(
            {
                "success": summary.success,
                "run_id": summary.run_id,
                "assets": summary.assets,
                "checks": summary.checks,
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
        failed = [name for name, passed in summary.checks.items() if not passed]
        click.echo(
            f"checks: {len(summary.checks) - len(failed)} passed"
            + (f", FAILED: {', '.join(failed)}" if failed else "")
        )
    if not summary.success:
        click.echo(f"b2b-pipeline: the run failed: {summary.error}", err=True)
        sys.exit(2)
