"""``b2b-pipeline reconcile --month YYYY-MM``: the month-end close pack."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from b2b_pipeline.cli.output import emit
from b2b_pipeline.cli.runner import run_job
from b2b_pipeline.config.settings import Settings


def _month(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value):
        raise click.BadParameter("use YYYY-MM, e.g. 2026-10")
    return value


@click.command()
@click.option("--month", required=True, callback=_month, help="YYYY-MM (UTC)")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv", "html"]),
    default="table",
    show_default=True,
)
@click.option("--out", type=click.Path(dir_okay=False), help="write the pack here")
def reconcile(month: str, fmt: str, out: str | None) -> None:
    """Compare the month's portal orders with the ERP's, order by order, and print the summary
    per account and currency (exit 1 when anything is unexplained)."""
    from b2b_pipeline.defs.finance.month_end import unexplained
    from b2b_pipeline.finance.close_pack import daily_totals, write_close_pack

    click.echo(f"Reconciling {month} …", err=True)
    summary = run_job("month_end_job", partition_key=month, outputs=("month_end_reconciliation",))
    if not summary.success:
        click.echo(f"b2b-pipeline: the reconciliation failed: {summary.error}", err=True)
        sys.exit(2)
    result = summary.values["month_end_reconciliation"]
    open_items = unexplained(result.lines)
    if fmt in ("csv", "html") or out:
        target = (
            Path(out)
            if out
            else (Settings.from_env().data_dir / "reports" / f"close-pack-{month}.{fmt}")
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        daily = daily_totals(result.portal_orders, result.erp_orders, month=month)
        pack_format = fmt if fmt != "table" else "html"
        write_close_pack(month, result.lines, result.summary, daily, target, pack_format)
        click.echo(f"Close pack written to {target}")
    if fmt in ("table", "json") and not out:
        emit(result.summary, fmt)
    if open_items:
        money = ", ".join(f"{c} {m:,.2f}" for c, m in open_items.money.items())
        click.echo(f"{open_items.count} order(s) unexplained ({money}).", err=True)
        sys.exit(1)
    click.echo("Every order matched or is held in the exception queue with a reason.", err=True)
