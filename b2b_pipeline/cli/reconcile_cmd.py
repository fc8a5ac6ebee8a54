"""``b2b-pipeline reconcile --month YYYY-MM``: the month-end close pack.

On screen (``table``): the summary per account and currency, then every difference with its
reason. For scripts (``json``): the close pack document (totals, outcome counts, summary, daily
totals and every line with its reason), the same one ``--format json --out F`` writes. ``csv``
and ``html`` write files (``--out``, or ``data/reports/close-pack-YYYY-MM.<fmt>``).

Exit status: 0 when every order is matched, held in the queue with a reason, or a difference
finance approved; 1 when anything is unexplained (the count and money go to stderr); 2 when
the month cannot be reconciled (a month the pipeline has no partition for, a system down).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    import pandas as pd

from b2b_pipeline.config.settings import Settings

# Columns of a difference on screen; the reason is last because it is the long one.
_DIFFERENCE_COLUMNS = [
    "outcome",
    "account_code",
    "portal_order_id",
    "erp_order_no",
    "currency",
    "difference",
    "reason",
]


def _table(frame: pd.DataFrame) -> None:
    """Print a table as a person reads a statement: money to 2 decimals, blanks for what is
    missing (tabulate would re-parse "-2.40" as a number and print -2.4, so it is told not to)."""
    import pandas as pd
    from tabulate import tabulate

    shown = frame.astype(object).where(frame.notna(), "")
    for column in ("portal_gross", "erp_gross", "variance", "difference"):
        if column in frame.columns:
            shown[column] = frame[column].map(lambda v: "" if pd.isna(v) else f"{v:,.2f}")
    click.echo(
        tabulate(
            shown,
            headers="keys",
            tablefmt="simple",
            showindex=False,
            disable_numparse=True,
        )
    )


def _month(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value):
        raise click.BadParameter("use YYYY-MM, e.g. 2026-10")
    return value


def _require_partition(month: str) -> None:
    """A month Dagster has no partition for would end in a traceback: say which months exist."""
    from b2b_pipeline.defs.finance.assets import monthly

    months = monthly.get_partition_keys()
    if month not in months:
        click.echo(
            f"b2b-pipeline: {month} cannot be reconciled: the pipeline reconciles the months "
            f"from {months[0]} to {months[-1]} (the current month, UTC).",
            err=True,
        )
        sys.exit(2)


@click.command()
@click.option("--month", required=True, callback=_month, help="YYYY-MM (UTC)")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv", "html"]),
    default="table",
    show_default=True,
    help="table on screen; json for scripts; csv and html write the close pack to a file",
)
@click.option("--out", type=click.Path(dir_okay=False), help="write the pack here")
def reconcile(month: str, fmt: str, out: str | None) -> None:
    """Compare the month's portal orders with the ERP's, order by order, and print the summary
    per account and currency and every difference (exit 1 when anything is unexplained)."""
    from b2b_pipeline.defs.finance.month_end import unexplained
    from b2b_pipeline.finance.close_pack import daily_totals, render_close_pack, write_close_pack

    _require_partition(month)
    click.echo(f"Reconciling {month} …", err=True)
    from b2b_pipeline.cli.runner import run_job  # Dagster only for commands that run a job

    summary = run_job("month_end_job", partition_key=month, outputs=("month_end_reconciliation",))
    if not summary.success:
        click.echo(f"b2b-pipeline: the reconciliation failed: {summary.error}", err=True)
        sys.exit(2)
    result = summary.values["month_end_reconciliation"]
    open_items = unexplained(result.lines)
    daily = daily_totals(result.portal_orders, result.erp_orders, month=month)
    if fmt in ("csv", "html") or out:
        target = (
            Path(out)
            if out
            else (Settings.from_env().data_dir / "reports" / f"close-pack-{month}.{fmt}")
        )
        pack_format = fmt if fmt != "table" else "html"
        written = write_close_pack(month, result.lines, result.summary, daily, target, pack_format)
        click.echo(f"Close pack written to {', '.join(str(path) for path in written)}")
    elif fmt == "json":
        # The whole pack, not the summary alone: a script needs each order's outcome and reason.
        click.echo(render_close_pack(month, result.lines, result.summary, daily, "json"), nl=False)
    else:
        _table(result.summary)
        differences = result.lines.loc[result.lines["outcome"] != "MATCHED"]
        if not differences.empty:
            # Unexplained first: they are what finance has to act on (the same rule as the
            # exit status, so an approved difference sorts with the explained ones).
            numbered = result.lines.assign(_row=range(len(result.lines)))
            to_act_on = unexplained(numbered).lines["_row"]
            differences = (
                numbered.loc[differences.index]
                .assign(_settled=lambda f: ~f["_row"].isin(to_act_on))
                .sort_values(["_settled", "outcome", "account_code"], kind="stable")
            )
            click.echo(f"\nDifferences ({len(differences)}):")
            _table(differences[_DIFFERENCE_COLUMNS])
    if open_items:
        money = ", ".join(f"{c} {m:,.2f}" for c, m in open_items.money.items())
        click.echo(f"{open_items.count} order(s) unexplained ({money}).", err=True)
        sys.exit(1)
    click.echo(
        "Every order matched, is held in the exception queue with a reason, or is a difference "
        "finance approved.",
        err=True,
    )
