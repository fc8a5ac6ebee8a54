"""``b2b-pipeline console``: serve the operations console, and manage its users.

``b2b-pipeline console [--host 127.0.0.1] [--port 8790]`` serves the console (FastAPI under
uvicorn, one process); ``b2b-pipeline console add-user NAME --role ROLE`` adds a user (or
changes their role and password) in the users file, the password typed twice at a prompt or,
for scripts, read from standard input. The web framework is imported only when the console is
served, so ``b2b-pipeline --help`` stays quick.

Refused attempts (a wrong password, a missing role, a form without its CSRF token) are logged
to standard error on ``b2b_pipeline.console.security``, whatever ``-v`` says: they are what an
administrator looks for. Passwords are never logged.
"""

from __future__ import annotations

import logging
import sys

import click

from b2b_pipeline.console.config import DEFAULT_HOST, DEFAULT_PORT

ROLES = ["viewer", "operations", "finance", "admin"]


def _settings():
    try:  # the command line's own data-folder rule (project root or B2B_DATA_DIR)
        from b2b_pipeline.cli.paths import settings
    except ImportError:  # pragma: no cover - older trees
        from b2b_pipeline.config.settings import Settings

        return Settings.from_env()
    return settings()


def _console_logging() -> None:
    """Security and console messages on stderr, even when the CLI logs errors only."""
    logger = logging.getLogger("b2b_pipeline.console")
    logger.setLevel(logging.INFO)
    if not any(getattr(h, "_b2b_console", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._b2b_console = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False


@click.group(invoke_without_command=True)
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="address to listen on")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int, help="port")
@click.pass_context
def console(ctx: click.Context, host: str, port: int) -> None:
    """Serve the operations console (exception queue, month end, prices, sync health) with
    sign-in; users come from B2B_CONSOLE_USERS (default data/console-users.yaml)."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from b2b_pipeline.console.app import create_app
    from b2b_pipeline.console.auth import UserDirectory, UsersFileError
    from b2b_pipeline.console.config import ConsoleConfig

    settings = _settings()
    config = ConsoleConfig.from_env(settings)
    try:
        users = len(UserDirectory(config.users_path))
    except UsersFileError as exc:
        click.echo(f"b2b-pipeline: {exc}", err=True)
        sys.exit(2)
    if not users:
        # Served anyway: the users file is read again when it changes, so the first user added
        # (by `add-user`, or the demo's by scripts/start) can sign in without a restart.
        click.echo(
            f"b2b-pipeline: no console users in {config.users_path} yet: nobody can sign in "
            "until one is added with `b2b-pipeline console add-user NAME --role admin`.",
            err=True,
        )
    _console_logging()
    app = create_app(settings=settings, config=config)
    click.echo(f"Console on http://{host}:{port} ({users} user(s) in {config.users_path}).")
    verbose = logging.getLogger().isEnabledFor(logging.INFO)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info" if verbose else "warning",
        access_log=verbose,
        # The Secure cookie flag follows the scheme a local https proxy forwards.
        proxy_headers=True,
    )


def _password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@console.command("add-user")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES, case_sensitive=False), required=True)
def add_user(name: str, role: str) -> None:
    """Add NAME with ROLE (or change their role and password); the password is asked for
    twice, or read from standard input when it is not a terminal."""
    from b2b_pipeline.console.auth import UsersFileError
    from b2b_pipeline.console.auth import add_user as add
    from b2b_pipeline.console.config import users_path

    path = users_path(_settings())
    try:
        is_new = add(path, name, role.lower(), _password())
    except (ValueError, UsersFileError) as exc:
        click.echo(f"b2b-pipeline: {exc}", err=True)
        sys.exit(2)
    verb = "Added" if is_new else "Updated"
    click.echo(f"{verb} console user {name} ({role.lower()}) in {path}.")


@console.command("remove-user")
@click.argument("name")
def remove_user(name: str) -> None:
    """Remove NAME from the users file; their sessions end at their next request."""
    from b2b_pipeline.console.auth import remove_user as remove
    from b2b_pipeline.console.config import users_path

    path = users_path(_settings())
    if not remove(path, name):
        click.echo(f"b2b-pipeline: there is no console user {name} in {path}", err=True)
        sys.exit(2)
    click.echo(f"Removed console user {name} from {path}.")
