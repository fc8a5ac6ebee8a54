"""Connections to the ERP database: URL handling, engine set-up per dialect, error text.

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


def parse_url(url: str | URL) -> URL:
    """A SQLAlchemy URL; plain ``postgresql://`` gets the psycopg 3 driver."""
    try:
        parsed = sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError) as exc:
        # The text may contain a password: do not quote it.
        raise ErpConfigurationError(
            "ERP_DATABASE_URL is not a valid SQLAlchemy URL (expected e.g. "
            "sqlite:///data/erp.sqlite or postgresql+psycopg://user:***@host/db)."
        ) from exc
    # Plain postgresql:// (or Heroku-style postgres://) means psycopg 3, the driver we ship.
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
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
    """An engine set up for the database kind (creating it contacts nothing)."""
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
