"""Printing for people (tables) and for machines (``--format json``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # pandas is imported by the commands that make frames, not by --help
    import pandas as pd

format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table for people, json for scripts",
)


def emit(data: pd.DataFrame | dict[str, Any] | list[dict[str, Any]], fmt: str) -> None:
    import pandas as pd
    from tabulate import tabulate

    if fmt == "json":
        if isinstance(data, pd.DataFrame):
            click.echo(data.to_json(orient="records", date_format="iso", indent=2))
        else:
            click.echo(json.dumps(data, indent=2, default=str))
        return
    if isinstance(data, pd.DataFrame):
        if data.empty:
            click.echo("(none)")
        else:
            click.echo(tabulate(data, headers="keys", tablefmt="simple", showindex=False))
    elif isinstance(data, dict):
        click.echo(tabulate(list(data.items()), tablefmt="plain"))
    else:
        click.echo(tabulate(data, headers="keys", tablefmt="simple"))
