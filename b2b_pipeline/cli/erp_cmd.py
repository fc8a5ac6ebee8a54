"""``b2b-pipeline erp init``: create the reference ERP's tables."""

from __future__ import annotations

import click

from b2b_pipeline.cli import paths


@click.group()
def erp() -> None:
    """The reference ERP database (ERP_DATABASE_URL; SQLite under data/ by default)."""


@erp.command("init")
def init() -> None:
    """Create the reference ERP's tables (no data) where ERP_DATABASE_URL points; safe twice."""
    from b2b_pipeline.connectors.erp.gateway import ErpGateway

    settings = paths.settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    gateway = ErpGateway(settings.erp_database_url)
    try:
        gateway.ping()
        gateway.create_schema()
        click.echo(f"Reference ERP ready at {gateway.display_url}")
    finally:
        gateway.dispose()
