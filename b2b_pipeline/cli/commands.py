"""Registers every sub-command module on the top-level group."""

from __future__ import annotations

import click


def register_commands(group: click.Group) -> None:
    # Each module imports only click at the top (pandas, DuckDB and Dagster inside the
    # commands), so registering them all keeps `b2b-pipeline --help` instant.
    from b2b_pipeline.cli import (
        audit_cmd,
        console_cmd,
        erp_cmd,
        exceptions_cmd,
        prices_cmd,
        reconcile_cmd,
        run_cmd,
        seed_cmd,
        sim_cmd,
    )

    group.add_command(sim_cmd.sim)
    group.add_command(erp_cmd.erp)
    group.add_command(seed_cmd.seed)
    group.add_command(audit_cmd.audit)
    group.add_command(run_cmd.run)
    group.add_command(exceptions_cmd.exceptions)
    group.add_command(reconcile_cmd.reconcile)
    group.add_command(prices_cmd.prices)
    group.add_command(console_cmd.console)
