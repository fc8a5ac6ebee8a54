"""The operations console: a server-rendered web app for finance and operations.

``b2b-pipeline console`` serves it (``cli/console_cmd.py``); ``app.create_app`` builds it.
Pages: the exception queue with its actions (``routes/exceptions.py``), the month-end close
pack (``routes/month_end.py``), price lookup (``routes/prices.py``) and sync health
(``routes/health.py``), all behind sign-in with four roles (``roles.py`` holds the table of who
may do what). It reads the audit store through its named reads and acts through
``flows.exception_actions`` and ``cli.runner``, the same code the command line uses; it has no
SQL of its own.

Importing this package is cheap (no web framework): ``scripts/start`` calls
:func:`demo_credentials` to print the demo user's password.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from b2b_pipeline.config.settings import Settings


def demo_credentials(settings: Settings | None = None) -> tuple[str, str]:
    """The embedded demo's console user and password (generated once into the data folder)."""
    from b2b_pipeline.console.auth import demo_credentials as credentials

    return credentials(settings)


__all__ = ["demo_credentials"]
