"""The process's one DuckDB instance, and cheap connections to it.

Starting a DuckDB database instance (``duckdb.connect``) costs 25-30 ms on a 2-core machine:
thread pool, buffer manager, built-in extensions. A cursor on a running instance costs well
under a millisecond, and ``ATTACH`` of a database file about 4 ms. A one-order run makes some
fifteen audit-store operations and a few in-memory computations, each of which used to start
and stop an instance of its own: 0.4 s of a run whose goal is 1 s (issue 11). So every
computation takes a cursor on one in-memory instance per process (:func:`scratch`), and the
audit store attaches its file to that instance for one operation and detaches it after
(``connectors/audit/connection.py``), which releases the file lock exactly as closing a
connection did.

Temporary tables, macros and registered frames belong to the cursor and go with it, so
computations on different cursors never see each other's names.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

_guard = threading.Lock()
# (pid, instance): a process forked from one that had started the instance must not use it
# (DuckDB's threads do not survive a fork), so the pid is checked on every use.
_current: tuple[int, duckdb.DuckDBPyConnection] | None = None


def instance() -> duckdb.DuckDBPyConnection:
    """The process's in-memory DuckDB instance, started on first use."""
    global _current
    with _guard:
        if _current is None or _current[0] != os.getpid():
            _current = (os.getpid(), duckdb.connect(":memory:"))
        return _current[1]


def cursor() -> duckdb.DuckDBPyConnection:
    """A new connection on the instance, with times in UTC (a per-connection setting)."""
    connection = instance().cursor()
    connection.execute("SET TimeZone = 'UTC'")
    return connection


def discard() -> None:
    """Close the instance (and with it every attached file); the next use starts a new one.

    For the case where a database file could not be detached: closing the instance is the one
    sure way to release the file's lock.
    """
    global _current
    with _guard:
        if _current is not None and _current[0] == os.getpid():
            _current[1].close()
        _current = None


@contextmanager
def scratch() -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection of its own on the process's instance, for one computation."""
    connection = cursor()
    try:
        yield connection
    finally:
        connection.close()
