"""``b2b-pipeline prices``: what price an account saw for a SKU on a date (invoice disputes).

On screen, money has two decimals (9.50, not 9.5) and a period still current reads "now";
``--format json`` keeps the numbers and timestamps as they are (``valid_to`` null = current).
An account the pipeline never gave price lists to is an error (exit 1), so a mistyped code is
not mistaken for "no price".
"""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import click

from b2b_pipeline.cli import paths
from b2b_pipeline.cli.output import emit, format_option, table

if TYPE_CHECKING:
    import pandas as pd


def _for_people(result: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    def money(value: Any) -> str:
        return "" if pd.isna(value) else f"{float(value):,.2f}"

    def moment(value: Any) -> str:
        return "now" if pd.isna(value) else f"{pd.Timestamp(value):%Y-%m-%d %H:%M:%S}"

    return pd.DataFrame(
        {
            "price list": result["price_list_slug"],
            "from quantity": result["min_quantity"],
            "list price": result["list_price"].map(money),
            "discount %": result["discount_percentage"].map(money),
            "price": result["price"].map(money),
            "currency": result["currency"],
            "valid from": result["valid_from"].map(moment),
            "valid to": result["valid_to"].map(moment),
        }
    )


@click.command()
@click.option("--account", required=True, help="ERP account code")
@click.option("--sku", required=True)
@click.option(
    "--on",
    "on",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
    default=None,
    help="date (UTC) [default: now]",
)
@format_option
def prices(account: str, sku: str, on: datetime | None, fmt: str) -> None:
    """The quantity breaks the portal showed ACCOUNT for SKU on a date, with the list each came
    from and the account's discount applied."""
    from b2b_pipeline.connectors.audit.store import AuditStore

    store = AuditStore(paths.require_audit_file())
    account = account.strip()
    if not store.account_had_price_lists(account):
        click.echo(
            f"b2b-pipeline: the pipeline never gave account {account} price lists in the "
            "portal: check the account code (an ERP account code, e.g. CUST0001).",
            err=True,
        )
        sys.exit(1)
    # A date alone means the whole UTC day (both prices on a day it changed); a time, that instant.
    when: date | datetime
    if on is None:
        when = datetime.now(UTC)
    elif on.hour == on.minute == on.second == 0:
        when = on.date()
    else:
        when = on.replace(tzinfo=UTC)
    result = store.price_on(account, sku, when)
    if fmt == "json":
        emit(result, fmt)
        return
    if result.empty:
        click.echo(f"No price for {sku} was pushed to {account}'s lists by {when:%Y-%m-%d}.")
        return
    if on is None:
        label = "now"
    elif isinstance(when, datetime):
        label = f"at {when:%Y-%m-%d %H:%M:%S} UTC"
    else:
        label = f"on {when:%Y-%m-%d} (UTC)"
    click.echo(f"{sku} for {account}, {label}:")
    click.echo(table(_for_people(result)))
