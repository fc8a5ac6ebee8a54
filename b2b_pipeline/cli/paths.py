"""Where the command line finds the product's files, whatever folder it is run from.

``B2B_DATA_DIR`` when set; otherwise the project's ``data/`` folder or the user's data folder
(the rule is ``config.settings.data_dir``). Never the current folder: run from another folder, a
command used to create an empty ``data/`` there and report on nothing.

The folder found is pinned in ``B2B_DATA_DIR`` for the rest of the process, so the Dagster
resources a command builds for a job (they read the environment) use the same files.

Readers never create the audit file: a command that reads it says where it looked when it is
not there (:func:`require_audit_file`), rather than creating an empty one.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from b2b_pipeline.config.settings import Settings, data_dir, project_root

__all__ = ["default_data_dir", "project_root", "require_audit_file", "settings"]


def default_data_dir() -> Path:
    """The data folder (one rule for the CLI, the console and the Dagster resources)."""
    return data_dir()


def settings() -> Settings:
    """The settings of this command, with the data folder resolved as above."""
    os.environ["B2B_DATA_DIR"] = str(default_data_dir())
    return Settings.from_env()


def require_audit_file(current: Settings | None = None) -> Path:
    """The audit file, or exit 2 naming where it was looked for (never created by a reader)."""
    current = current or settings()
    path = current.audit_db
    if not path.exists():
        click.echo(
            f"b2b-pipeline: no audit trail at {path}: nothing has run against it yet "
            "(set B2B_AUDIT_DB or B2B_DATA_DIR to read another one).",
            err=True,
        )
        sys.exit(2)
    return path
