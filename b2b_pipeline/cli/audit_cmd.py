"""``b2b-pipeline audit verify``: prove the audit trail has not been edited."""

from __future__ import annotations

import sys

import click

from b2b_pipeline.cli.output import emit, format_option
from b2b_pipeline.config.settings import Settings


@click.group()
def audit() -> None:
    """The audit trail (B2B_AUDIT_DB; data/audit.duckdb by default)."""


@audit.command("verify")
@format_option
def verify(fmt: str) -> None:
    """Check the hash chain: exit 0 when intact, 1 naming each edited, deleted, inserted or
    reordered row."""
    from b2b_pipeline.connectors.audit.store import AuditStore

    settings = Settings.from_env()
    if not settings.audit_db.exists():
        click.echo(f"b2b-pipeline: no audit trail at {settings.audit_db}", err=True)
        sys.exit(2)
    result = AuditStore(settings.audit_db).verify()
    if fmt == "json":
        emit({"ok": result.ok, "checked": result.checked, "problems": result.problems}, fmt)
    elif result.ok:
        click.echo(f"Audit trail intact: {result.checked} events checked.")
    else:
        click.echo(f"Audit trail TAMPERED: {len(result.problems)} problem(s) in {result.checked}")
        for problem in result.problems:
            click.echo(f"  - {problem}")
    sys.exit(0 if result.ok else 1)
