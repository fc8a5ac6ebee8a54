"""Registers every sub-command module on the top-level group."""

from __future__ import annotations

import click


def register_commands(group: click.Group) -> None:
    from b2b_pipeline.cli import audit_cmd, erp_cmd, seed_cmd, sim_cmd

    group.add_command(sim_cmd.sim)
    group.add_command(erp_cmd.erp)
    group.add_command(seed_cmd.seed)
    group.add_command(audit_cmd.audit)
    try:
        from b2b_pipeline.cli import exceptions_cmd, prices_cmd, reconcile_cmd, run_cmd
    except ImportError:  # the flow commands arrive with the flows
        return
    group.add_command(run_cmd.run)
    group.add_command(exceptions_cmd.exceptions)
    group.add_command(reconcile_cmd.reconcile)
    group.add_command(prices_cmd.prices)
