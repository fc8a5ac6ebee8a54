"""``b2b-pipeline reconcile --month YYYY-MM``: the month-end close pack.

On screen (``table``): the summary per account and currency, then every difference with its
reason (wrapped to the terminal; orders named by the number the buyer sees, ``SL-100003``).
For scripts (``json``): the close pack document (totals, outcome counts, summary, daily
totals and every line with its reason), the same one ``--format json --out F`` writes. ``csv``
and ``html`` write files (``--out``, or ``<data folder>/reports/close-pack-YYYY-MM.<fmt>``).

It runs the same reconciliation as the ``month_end_reconciliation`` asset
(``flows.month_end.run_month_end``), directly, without Dagster: the lines it files replace the
month's lines in the audit store, as a run of the asset would.

Exit status: 0 when every order is matched, held in the queue with a reason, or a difference
finance approved; 1 when anything is unexplained (the count and money go to stderr); 2 when
the month cannot be reconciled (a month the pipeline has no partition for, a system down).
"""

from __future__ import annotations

import re
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import click

from b2b_pipeline.cli import paths
from b2b_pipeline.cli.output import table, terminal_width

if TYPE_CHECKING:
    import pandas as pd

    from b2b_pipeline.finance.close_pack import ClosePackFormat
    from b2b_pipeline.flows.month_end import MonthEnd

_MONEY_COLUMNS = ("portal_gross", "erp_gross", "variance", "difference")


def _money(frame: pd.DataFrame) -> pd.DataFrame:
    """Money to 2 decimals with thousands separators, as on a statement (-2.40, not -2.4)."""
    import pandas as pd

    shown = frame.copy()
    for column in _MONEY_COLUMNS:
        if column in shown.columns:
            shown[column] = frame[column].map(lambda v: "" if pd.isna(v) else f"{v:,.2f}")
    return shown


def _month(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value):
        raise click.BadParameter("use YYYY-MM, e.g. 2026-10")
    return value


def _require_reconcilable(month: str) -> None:
    """A month the pipeline has no partition for is refused in one line, naming the range."""
    from b2b_pipeline.flows.month_end import reconcilable_months

    first, last = reconcilable_months()
    if not first <= month <= last:
        click.echo(
            f"b2b-pipeline: {month} cannot be reconciled: the pipeline reconciles the months "
            f"from {first} to {last} (the current month, UTC).",
            err=True,
        )
        sys.exit(2)


def _reconcile(month: str) -> MonthEnd:
    from b2b_pipeline.config.mappings import load_mappings
    from b2b_pipeline.connectors.audit.store import AuditStore
    from b2b_pipeline.connectors.erp.gateway import ErpGateway
    from b2b_pipeline.connectors.sparklayer.client import SparkLayerClient
    from b2b_pipeline.flows.month_end import run_month_end

    current = paths.settings()
    audit = AuditStore(paths.require_audit_file(current))
    mappings = load_mappings(str(current.mappings_path) if current.mappings_path else None)
    gateway = ErpGateway(current.erp_database_url)
    try:
        with SparkLayerClient(
            current.sparklayer_base_url,
            current.sparklayer_site_id,
            current.sparklayer_client_id,
            current.sparklayer_client_secret,
            requests_per_second=current.sparklayer_requests_per_second,
        ) as portal:
            return run_month_end(
                portal=portal,
                erp=gateway,
                audit=audit,
                mappings=mappings,
                month=month,
                # Told apart from a Dagster run's id in the audit trail.
                run_id=f"cli-reconcile-{uuid.uuid4()}",
            )
    finally:
        gateway.dispose()


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
@click.option("--wide", is_flag=True, help="on screen, reasons on one line (not wrapped)")
def reconcile(month: str, fmt: str, out: str | None, wide: bool) -> None:
    """Compare the month's portal orders with the ERP's, order by order, and print the summary
    per account and currency and every difference (exit 1 when anything is unexplained)."""
    _require_reconcilable(month)
    click.echo(f"Reconciling {month} …", err=True)
    result = _reconcile(month)
    from b2b_pipeline.finance.close_pack import daily_totals, render_close_pack, write_close_pack

    open_items = result.unexplained
    daily = daily_totals(result.portal_orders, result.erp_orders, month=month)
    if fmt in ("csv", "html") or out:
        target = (
            Path(out)
            if out
            else (paths.settings().data_dir / "reports" / f"close-pack-{month}.{fmt}")
        )
        pack_format: ClosePackFormat = "html" if fmt == "table" else fmt  # type: ignore[assignment]
        written = write_close_pack(month, result.lines, result.summary, daily, target, pack_format)
        click.echo(f"Close pack written to {', '.join(str(path) for path in written)}")
    elif fmt == "json":
        # The whole pack, not the summary alone: a script needs each order's outcome and reason.
        click.echo(render_close_pack(month, result.lines, result.summary, daily, "json"), nl=False)
    else:
        _print_tables(result, wide=wide)
    if open_items:
        money = ", ".join(f"{c} {m:,.2f}" for c, m in open_items.money.items())
        click.echo(f"{open_items.count} order(s) unexplained ({money}).", err=True)
        sys.exit(1)
    click.echo(
        "Every order matched, is held in the exception queue with a reason, or is a difference "
        "finance approved.",
        err=True,
    )


def _print_tables(result: MonthEnd, *, wide: bool) -> None:
    click.echo(table(_money(result.summary)))
    lines = result.lines
    differences = lines.loc[lines["outcome"] != "MATCHED"]
    if differences.empty:
        return
    # Unexplained first: they are what finance has to act on (the same rule as the exit
    # status, so an approved difference sorts with the explained ones).
    from b2b_pipeline.flows.month_end import unexplained

    numbered = lines.assign(_row=range(len(lines)))
    act_rows = unexplained(numbered).lines["_row"]  # unexplained() renumbers its lines
    differences = (
        numbered.loc[differences.index]
        .assign(_settled=lambda f: ~f["_row"].isin(act_rows))
        .sort_values(["_settled", "outcome", "account_code"], kind="stable")
    )
    order = differences["order_number"].where(
        differences["order_number"].notna(), differences["portal_order_id"]
    )
    shown = _money(
        differences.assign(order=order)[
            ["outcome", "account_code", "order", "erp_order_no", "currency", "difference", "reason"]
        ]
    ).rename(columns={"account_code": "account", "erp_order_no": "ERP order"})
    shown["ERP order"] = shown["ERP order"].astype("Int64")
    click.echo(f"\nDifferences ({len(differences)}):")
    click.echo(table(shown, wrap=None if wide else {"reason": terminal_width()}))
