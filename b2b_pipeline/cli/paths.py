"""Where the command line finds the product's files, whatever folder it is run from.

``B2B_DATA_DIR`` when set; otherwise the ``data/`` folder of the project the package runs from
(a source checkout: the folder holding ``pyproject.toml`` beside ``b2b_pipeline/``); otherwise,
for an installed package, the user's data folder (``$XDG_DATA_HOME/b2b-pipeline``, by default
``~/.local/share/b2b-pipeline``). Never the current folder: run from another folder, a command
used to create an empty ``data/`` there and report on nothing.

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

from b2b_pipeline.config.settings import Settings

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def project_root() -> Path | None:
    """The source checkout the package runs from, or None for an installed package."""
    root = PACKAGE_ROOT.parent
    if (root / "pyproject.toml").is_file() and (root / "b2b_pipeline").is_dir():
        return root
    return None


def default_data_dir() -> Path:
    configured = os.environ.get("B2B_DATA_DIR")
    if configured:
        return Path(configured).expanduser().resolve()
    root = project_root()
    if root is not None:
        return root / "data"
    user_data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(user_data) / "b2b-pipeline"


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
