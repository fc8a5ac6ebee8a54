"""``b2b-pipeline audit verify`` and ``audit head``: prove the audit trail has not been edited.

Exit status (contracts/command-line.md): 0 every check ran and passed; 1 a check found
tampering (each problem names the table and the row: seq, checkpoint, exception id or portal
order); 2 the audit file is missing, or a check could not run (no audit key: see
``connectors/audit/keys.py``), which is not proof that the trail is intact.
"""

from __future__ import annotations

import sys

import click

from b2b_pipeline.cli import paths
from b2b_pipeline.cli.output import emit, format_option


@click.group()
def audit() -> None:
    """The audit trail (B2B_AUDIT_DB; data/audit.duckdb by default)."""


def _store():
    from b2b_pipeline.connectors.audit.store import AuditStore

    return AuditStore(paths.require_audit_file())


@audit.command("verify")
@format_option
def verify(fmt: str) -> None:
    """Check the events chain, the keyed seals (B2B_AUDIT_KEY or data/audit.key), the
    exception queue and order postings, and the anchors outside the file (data/audit.anchors):
    exit 0 when intact, 1 naming each edited, deleted, inserted or reordered row, 2 when a check
    could not run."""
    result = _store().verify()
    if fmt == "json":
        emit(
            {
                "ok": result.ok,
                "checked": result.checked,
                "problems": result.problems,
                "complete": result.complete,
                "checks": [
                    {
                        "name": check.name,
                        "passed": check.complete and not check.problems,
                        "complete": check.complete,
                        "summary": check.summary,
                        "problems": check.problems,
                    }
                    for check in result.checks
                ],
            },
            fmt,
        )
    else:
        if result.problems:
            click.echo(
                f"Audit trail TAMPERED: {len(result.problems)} problem(s) in {result.checked} "
                "events checked"
            )
            for problem in result.problems:
                click.echo(f"  - {problem}")
        elif not result.complete:
            click.echo(
                f"Audit trail NOT VERIFIED: {result.checked} events checked, but not every "
                "check could run (see below)."
            )
        else:
            click.echo(f"Audit trail intact: {result.checked} events checked.")
        click.echo("What was checked:")
        for check in result.checks:
            status = "FAILED" if check.problems else ("NOT RUN" if not check.complete else "ok")
            click.echo(f"  {status:<7} {check.name}: {check.summary}")
    if result.problems:
        sys.exit(1)
    sys.exit(0 if result.complete else 2)


@audit.command("head")
@format_option
def head(fmt: str) -> None:
    """Print the newest sealed checkpoint (trail id, checkpoint, seqs, seal), to keep a copy
    somewhere the audit file's editors cannot write (a ticket, the ERP, a mail)."""
    found = _store().chain_head()
    if found is None:
        click.echo("b2b-pipeline: the audit trail has no sealed checkpoint yet", err=True)
        sys.exit(1)
    fields = {
        "trail_id": found.trail_id,
        "checkpoint": found.checkpoint,
        "events_seq": found.events_seq,
        "records_seq": found.records_seq,
        "sealed_at": found.sealed_at.isoformat(),
        "seal": found.seal,
    }
    emit(fields, fmt)
