"""Printing for people (tables) and for machines (``--format json``)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

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

# Width assumed when the output is not a terminal (a pipe, a file, a test): wide enough for a
# report, narrow enough to read in an e-mail.
DEFAULT_WIDTH = 120
# Columns of a table are separated by two spaces (tabulate's "simple" format).
_GAP = 2
_MIN_WRAPPED = 20


def terminal_width() -> int:
    return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns


def table(frame: pd.DataFrame, *, wrap: Mapping[str, int] | None = None) -> str:
    """``frame`` as a table for people: blanks for what is missing, text left as written
    (``SL-100003`` and ``-2.40`` are not re-read as numbers).

    ``wrap`` = {column: total width}: that column (the long one, e.g. a message) is wrapped
    so that the whole table fits in the width, never cut; None keeps every cell on one line.
    """
    from tabulate import tabulate

    shown = frame.astype(object).where(frame.notna(), "").astype(str)
    widths: list[int | None] | None = None
    if wrap:
        widths = []
        for column in shown.columns:
            if column in wrap:
                # tabulate pads a header by two (MIN_PADDING), then separates columns by two.
                others = sum(
                    max(shown[c].str.len().max(), len(str(c)) + _GAP) + _GAP
                    for c in shown.columns
                    if c != column
                )
                widths.append(max(wrap[column] - others, _MIN_WRAPPED))
            else:
                widths.append(None)
    return tabulate(
        cast(Any, shown),  # tabulate reads a DataFrame; its stubs only name plain iterables
        headers="keys",
        tablefmt="simple",
        showindex=False,
        disable_numparse=True,
        maxcolwidths=widths,
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
            click.echo(
                tabulate(cast(Any, data), headers="keys", tablefmt="simple", showindex=False)
            )
    elif isinstance(data, dict):
        click.echo(tabulate(list(data.items()), tablefmt="plain"))
    else:
        click.echo(tabulate(data, headers="keys", tablefmt="simple"))
