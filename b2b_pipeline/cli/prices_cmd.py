"""``b2b-pipeline prices``: what price an account saw for a SKU on a date (invoice disputes)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import click

from b2b_pipeline.cli.output import emit, format_option
from b2b_pipeline.config.settings import Settings


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

    # A date alone means the whole UTC day (both prices on a day it changed); a time, that instant.
    when: date | datetime
    if on is None:
        when = datetime.now(UTC)
    elif on.hour == on.minute == on.second == 0:
        when = on.date()
    else:
        when = on.replace(tzinfo=UTC)
    result = AuditStore(Settings.from_env().audit_db).price_on(account, sku, when)
    if result.empty and fmt == "table":
        click.echo(f"No price for {sku} was pushed to {account}'s lists by {when:%Y-%m-%d}.")
        return
    emit(result, fmt)
