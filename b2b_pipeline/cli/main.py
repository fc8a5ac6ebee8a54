"""``b2b-pipeline``: the command line for finance, operations and scripts.

Exit status (contracts/command-line.md): 0 success; 1 the command ran and found problems;
2 bad usage or a system that cannot be reached. A system that cannot be reached is reported in
one line naming it, never with a traceback and never with a secret.
"""

from __future__ import annotations

import logging
import sys

import click

from b2b_pipeline.cli.commands import register_commands


def _audit_file_problem(error: BaseException) -> str | None:
    """One line for an audit file DuckDB cannot open (a folder, not a DuckDB file, no access).

    Only file-level errors: a lock another process holds is waited out by the store, and any
    other DuckDB error is a defect that deserves its traceback.
    """
    duckdb = sys.modules.get("duckdb")  # not imported: the error cannot be DuckDB's
    if duckdb is None or not isinstance(error, duckdb.IOException | duckdb.PermissionException):
        return None
    from b2b_pipeline.config.settings import Settings

    reason = " ".join(str(error).split())[:300]
    return f"the audit trail (B2B_AUDIT_DB={Settings.from_env().audit_db}) cannot be used: {reason}"


class FriendlyErrors(click.Group):
    """Turns the errors people can act on into one line and exit status 2.

    These are the connectors' typed errors (their messages name the system, mask passwords and
    never carry the client secret), a bad mapping file or setting, and an audit file DuckDB
    cannot open.
    """

    def invoke(self, ctx: click.Context):
        from b2b_pipeline.config.mappings import InvalidMappings
        from b2b_pipeline.config.settings import ConfigurationError

        unreachable: tuple[type[BaseException], ...] = (InvalidMappings, ConfigurationError)
        try:
            from b2b_pipeline.connectors.erp.errors import ErpError

            # Unreachable, badly configured, missing tables (says to run `erp init`), refused.
            unreachable += (ErpError,)
        except ImportError:  # pragma: no cover - during partial installs
            pass
        try:
            from b2b_pipeline.connectors.sparklayer.errors import (
                AuthenticationError,
                PortalConfigurationError,
                PortalUnreachableError,
            )

            unreachable += (PortalUnreachableError, AuthenticationError, PortalConfigurationError)
        except ImportError:  # pragma: no cover
            pass
        try:
            return super().invoke(ctx)
        except unreachable as exc:
            click.echo(f"b2b-pipeline: {_one_line(str(exc))}", err=True)
            sys.exit(2)
        except Exception as exc:
            problem = _audit_file_problem(exc)
            if problem is None:
                raise
            click.echo(f"b2b-pipeline: {problem}", err=True)
            sys.exit(2)


def _one_line(text: str) -> str:
    # The contract promises one line; a driver message may carry newlines.
    return " ".join(text.split())


# Commands that never read the operating model (the simulator plays SparkLayer itself).
NO_MAPPINGS_NEEDED = {"sim"}


@click.group(cls=FriendlyErrors)
@click.option("-v", "--verbose", is_flag=True, help="log what the pipeline does")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """The SparkLayer ↔ ERP integration: portal simulator, reference ERP, sync runs, the
    exception queue, month-end reconciliation and the audit trail.

    Every command reads SPARKLAYER_BASE_URL, SPARKLAYER_SITE_ID, SPARKLAYER_CLIENT_ID,
    SPARKLAYER_CLIENT_SECRET, ERP_DATABASE_URL, B2B_AUDIT_DB and B2B_MAPPINGS; unset means the
    embedded defaults under ./data.
    """
    # Without -v only errors are logged: the connectors' retry warnings ("attempt 2 of 5 ...")
    # would otherwise surround the one line that says which system could not be reached.
    logging.basicConfig(
        level=logging.INFO if verbose else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if ctx.invoked_subcommand not in NO_MAPPINGS_NEEDED and not ctx.resilient_parsing:
        # Refuse an invalid (or version-1) mapping file at start-up, in one line, before any
        # system is contacted.
        from b2b_pipeline.config.mappings import mappings_from_env

        mappings_from_env()


register_commands(cli)

if __name__ == "__main__":  # pragma: no cover
    cli()
