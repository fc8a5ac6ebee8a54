"""Connections to the ERP database: URL handling, engine set-up per dialect, error text.

A bad ``ERP_DATABASE_URL`` (not a URL, a database kind SQLAlchemy does not know, a driver that
is not installed) is an :class:`ErpConfigurationError` with one line that shows the URL with its
password masked, raised before anything is contacted; the SQLAlchemy or import error behind it
is not chained (``from None``), because a Dagster step failure records the whole cause chain in
the event log and SQLAlchemy's texts may quote the URL. A password given as a ``password=``
query argument is moved into the URL's password, so that it is masked like any other.

SQLite runs overlap (Dagster runs in parallel processes): WAL lets readers run beside the
writer, a busy timeout makes writers wait instead of failing, and writes take the write lock up
front (``BEGIN IMMEDIATE``) so two writers queue instead of failing on a lock upgrade.
PostgreSQL goes through psycopg 3, with a connect timeout so an unreachable server fails fast.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

from b2b_pipeline.connectors.erp.errors import ErpConfigurationError

# How long a SQLite writer waits for another process's write to finish.
SQLITE_BUSY_TIMEOUT_S = 30
PG_CONNECT_TIMEOUT_S = 10
# Execution option that makes a SQLite transaction take the write lock when it begins.
WRITE_OPTION = "erp_write"


# Query arguments that carry a password (libpq's and the common driver spellings).
_PASSWORD_QUERY_KEYS = ("password", "passwd", "pwd")
_EXAMPLES = "e.g. sqlite:///data/erp.sqlite or postgresql://user:***@host:5432/erp"


def masked_url_text(text: str) -> str:
    """A URL string that may not parse, with anything that can be a password replaced by ***.

    For the messages about a URL SQLAlchemy could not read (so ``render_as_string`` is not
    available): the user info is cut at its last ``@`` (a password may contain ``@`` or ``/``)
    and ``password=`` query arguments are masked.
    """
    text = " ".join(str(text).split())
    scheme, separator, rest = text.partition("://")
    if not separator:
        # Not URL-shaped at all: it may be a bare password pasted into the wrong variable.
        return "(not shown: it is not a URL)"
    if "@" in rest:
        userinfo, _, host = rest.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        if colon:
            text = f"{scheme}://{user}:***@{host}"
    keys = "|".join(_PASSWORD_QUERY_KEYS)
    text = re.sub(rf"(?i)([?&](?:{keys})=)[^&]*", r"\1***", text)
    return text[:200]


def display_url(url: URL) -> str:
    """The URL for messages and logs: password masked (a query password too, see parse_url)."""
    return url.render_as_string(hide_password=True)


def parse_url(url: str | URL) -> URL:
    """A SQLAlchemy URL; plain ``postgresql://`` gets the psycopg 3 driver.

    Raises :class:`ErpConfigurationError` (one line, password masked) for text that is not a
    SQLAlchemy URL.
    """
    try:
        parsed = sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError, TypeError):
        raise ErpConfigurationError(
            f"The ERP database URL (ERP_DATABASE_URL) {masked_url_text(str(url))!r} is not a "
            f"valid SQLAlchemy URL: expected dialect[+driver]://user:password@host:port/"
            f"database, {_EXAMPLES}. Nothing was contacted."
        ) from None
    if "@" in (parsed.host or ""):
        # SQLAlchemy ends the password at its first "@": the rest of it became the host name,
        # and a masked rendering would show it.
        raise ErpConfigurationError(
            f"The ERP database URL (ERP_DATABASE_URL) {masked_url_text(str(url))!r} has an "
            "'@' in its password that is not percent-encoded: write it as %40. Nothing was "
            "contacted."
        )
    # Plain postgresql:// (or Heroku-style postgres://) means psycopg 3, the driver we ship.
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.password is None:
        for key in _PASSWORD_QUERY_KEYS:
            value = parsed.query.get(key)
            if isinstance(value, str):
                # Same connection (SQLAlchemy hands the URL's password to the driver), but now
                # hidden by render_as_string and scrubbed from driver messages by the gateway.
                parsed = parsed.set(password=value).difference_update_query([key])
                break
    return parsed


def sqlite_file(url: URL) -> Path | None:
    """The file behind a SQLite URL, or None (another database, or in memory)."""
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        return None
    return Path(database)


def create_engine(url: URL) -> Engine:
    """An engine set up for the database kind (creating it contacts nothing).

    Raises :class:`ErpConfigurationError` when SQLAlchemy does not know the database kind, its
    driver is not installed, or the URL's arguments are not ones the driver takes.
    """
    shown = display_url(url)
    try:
        return _engine_for(url)
    except sa.exc.NoSuchModuleError:
        raise ErpConfigurationError(
            f"The ERP database URL (ERP_DATABASE_URL) {shown!r} names a database kind "
            f"SQLAlchemy does not know ({url.drivername!r}): {_EXAMPLES}. Nothing was contacted."
        ) from None
    except ImportError as missing:
        module = missing.name or str(missing)
        raise ErpConfigurationError(
            f"The ERP database driver for {url.drivername!r} (Python module {module!r}) is not "
            f"installed, so ERP_DATABASE_URL {shown!r} cannot be used: install that driver "
            "in this environment, or use sqlite:// or postgresql:// (psycopg 3 is included). "
            "Nothing was contacted."
        ) from None
    except (sa.exc.ArgumentError, TypeError, ValueError) as refused:
        # Arguments in the query string the dialect refuses; the class says enough, the text
        # may quote the URL.
        raise ErpConfigurationError(
            f"The ERP database URL (ERP_DATABASE_URL) {shown!r} has arguments the "
            f"{url.drivername!r} driver does not take ({type(refused).__name__}): {_EXAMPLES}. "
            "Nothing was contacted."
        ) from None


def _engine_for(url: URL) -> Engine:
    backend = url.get_backend_name()
    if backend == "sqlite":
        engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
        in_memory = sqlite_file(url) is None

        @sa.event.listens_for(engine, "connect")
        def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event below own transaction boundaries (pysqlite's own
            # implicit BEGIN would start them late, after a read, and break BEGIN IMMEDIATE).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _begin_sqlite(conn: Connection) -> None:
            writing = conn.get_execution_options().get(WRITE_OPTION, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")

        return engine
    connect_args: dict[str, Any] = {}
    if backend == "postgresql":
        connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
    return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def one_line_reason(exc: BaseException, secret: str | None) -> str:
    """The driver's message on one line, without the password and SQLAlchemy's help link."""
    orig = getattr(exc, "orig", None) or exc
    text = " ".join(str(orig).split()) or type(orig).__name__
    if secret:
        text = text.replace(secret, "***")
    text = re.sub(r"\s*\(Background on this error at: [^)]*\)", "", text)
    # The gateway ends its sentence itself: "...accepting TCP/IP connections?." reads badly.
    return text[:300].rstrip(" .?!")


def is_missing_table(orig: BaseException) -> bool:
    """Whether a driver error says the reference tables were never created."""
    text = str(orig).lower()
    return "no such table" in text or ("relation" in text and "does not exist" in text)
