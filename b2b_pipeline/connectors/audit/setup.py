"""The audit file's schema, created once per schema version, never on a read.

Every table and view of the audit file (the audit trail, the exception queue, the finance
tables and the pipeline's sync state) is created by :func:`ensure_audit_schema`. It first
looks, read-only, for the version stamp the last creation left in ``audit_schema``; only a new
file or a new release of the DDL opens the file for writing. So a reader (an asset check,
``exceptions list``, the console) never takes the writer's lock just to start, and the DDL runs
once per file and release instead of on every call.
"""

from __future__ import annotations

import hashlib
import threading
from functools import cache
from pathlib import Path

import duckdb

from b2b_pipeline.connectors.audit.connection import (
    DEFAULT_LOCK_WAIT_SECONDS,
    run_with_lock_retry,
)

_STAMP_SQL = """
CREATE TABLE IF NOT EXISTS audit_schema (
    name VARCHAR PRIMARY KEY,
    version VARCHAR NOT NULL,
    created_at TIMESTAMPTZ DEFAULT current_timestamp
);
"""
_SCHEMA_NAME = "b2b-pipeline"

# Files this process has seen at the current version, by (path, inode): a file deleted and
# created again is a new file.
_ready: set[tuple[Path, int]] = set()
_ready_guard = threading.Lock()


@cache
def _ddl() -> tuple[str, ...]:
    from b2b_pipeline.connectors.audit.schema import TABLES_SQL, VIEWS_SQL
    from b2b_pipeline.connectors.sync_state import MIGRATIONS, SCHEMA

    return (TABLES_SQL, SCHEMA, MIGRATIONS, VIEWS_SQL, _STAMP_SQL)


def schema_version() -> str:
    """A digest of every statement: a release that changes the DDL gets a new version."""
    return hashlib.sha256("\n".join(_ddl()).encode()).hexdigest()[:16]


def _key(path: Path) -> tuple[Path, int] | None:
    try:
        return (path.resolve(), path.stat().st_ino)
    except FileNotFoundError:
        return None


def _is_current(connection: duckdb.DuckDBPyConnection) -> bool:
    try:
        found = connection.execute(
            "SELECT version FROM audit_schema WHERE name = ?", [_SCHEMA_NAME]
        ).fetchall()
    except duckdb.CatalogException:  # a new file, or one written before the stamp existed
        return False
    return bool(found) and found[0][0] == schema_version()


def _create(connection: duckdb.DuckDBPyConnection) -> None:
    for statement in _ddl():
        connection.execute(statement)
    connection.execute(
        "INSERT OR REPLACE INTO audit_schema (name, version) VALUES (?, ?)",
        [_SCHEMA_NAME, schema_version()],
    )


def ensure_audit_schema(
    path: Path | str, *, lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS
) -> bool:
    """Make sure the audit file at ``path`` has the current schema; True if DDL ran."""
    path = Path(path)
    key = _key(path)
    if key is not None and key in _ready:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    if key is not None and run_with_lock_retry(
        path, _is_current, read_only=True, max_wait_seconds=lock_wait_seconds
    ):
        created = False
    else:
        run_with_lock_retry(path, _create, read_only=False, max_wait_seconds=lock_wait_seconds)
        created = True
    with _ready_guard:
        new_key = _key(path)
        if new_key is not None:
            _ready.add(new_key)
    return created


def forget_schema_cache() -> None:
    """For tests that replace a file behind the process's back."""
    with _ready_guard:
        _ready.clear()
