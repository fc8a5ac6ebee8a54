"""Short-lived DuckDB connections that wait their turn for the file.

DuckDB lets one process write a database file at a time, and a read-only process also holds a
lock that excludes a writer. Several Dagster runs, the CLI and the UI share the audit file, so
every operation attaches the file to the process's DuckDB instance, does its work in one
transaction and detaches it (which releases the lock as closing a connection does, for a tenth
of the cost: ``duckdb_instance.py``), and a lock held by another process is waited out with
bounded exponential backoff and jitter. A conflicting
write from another thread of the same process (DuckDB's optimistic concurrency) is retried the
same way: the transaction rolled back, so running the whole operation again loses nothing.

Within one process, operations on a file are serialised by a thread lock: DuckDB's file lock is
a POSIX lock, which does not exclude the same process, and two threads opening and closing the
file in turn can otherwise end up with two database instances writing it at once.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import duckdb
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_random_exponential,
)

from b2b_pipeline import duckdb_instance

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Long enough to outlast a large append by another run; short enough that a stuck writer
# surfaces as an error rather than a hung run.
DEFAULT_LOCK_WAIT_SECONDS = 120.0

_process_locks: dict[Path, threading.Lock] = {}
_process_locks_guard = threading.Lock()


def _process_lock(database: Path) -> threading.Lock:
    with _process_locks_guard:
        return _process_locks.setdefault(database.resolve(), threading.Lock())


def is_lock_conflict(error: BaseException) -> bool:
    """True for a file lock held by another process, or a write-write conflict in this one."""
    message = str(error)
    if isinstance(error, duckdb.IOException):
        return "Could not set lock" in message or "Conflicting lock" in message
    if isinstance(error, duckdb.TransactionException):
        return "Conflict" in message or "conflict" in message
    return False


def _log_wait(state: RetryCallState) -> None:
    wait = state.next_action.sleep if state.next_action else 0.0
    logger.info(
        "audit store %s is busy (another process holds its lock); waiting %.2fs, attempt %d",
        state.args[0] if state.args else "",
        wait,
        state.attempt_number,
    )


def run_with_lock_retry(
    database: Path,
    work: Callable[[duckdb.DuckDBPyConnection], T],
    *,
    read_only: bool,
    max_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS,
) -> T:
    """Run ``work`` on a fresh connection, in one transaction when writing; retry lock waits."""
    retrying = Retrying(
        retry=retry_if_exception(is_lock_conflict),
        wait=wait_random_exponential(multiplier=0.02, max=2.0),
        stop=stop_after_delay(max_wait_seconds),
        before_sleep=_log_wait,
        reraise=True,
    )
    process_lock = _process_lock(database)
    if not process_lock.acquire(timeout=max_wait_seconds):
        raise TimeoutError(
            f"audit store {database} stayed busy in this process for {max_wait_seconds:.0f}s"
        )
    try:
        return retrying(_run_once, database, work, read_only)
    finally:
        process_lock.release()


def _run_once(database: Path, work: Callable[[duckdb.DuckDBPyConnection], T], read_only: bool) -> T:
    with _opened(database, read_only) as connection:
        if read_only:
            return work(connection)
        connection.begin()
        try:
            result = work(connection)
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
        return result


@contextmanager
def _opened(database: Path, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
    """The file attached to the process's DuckDB instance for one operation, then detached.

    Attaching costs a few milliseconds where starting an instance with ``duckdb.connect``
    costs 25-30 (``duckdb_instance.py``); detaching releases the file lock as closing did.
    A file that this process already holds open through a connection of its own (a test, a
    finance user's session in the same interpreter) cannot be attached a second time: that
    connection's instance is shared instead, as ``duckdb.connect`` does.
    """
    alias = _alias(database)
    read_only = read_only and database.exists()  # a new file is created by a writable attach
    cursor = duckdb_instance.cursor()
    try:
        cursor.execute(
            f"ATTACH {_quoted(database)} AS {alias}" + (" (READ_ONLY)" if read_only else "")
        )
    except duckdb.Error as error:
        cursor.close()
        if "Unique file handle conflict" not in str(error):
            raise
        yield from _shared(database)
        return
    try:
        cursor.execute(f"USE {alias}")
        yield cursor
    finally:
        _detach(cursor, alias)


def _detach(cursor: duckdb.DuckDBPyConnection, alias: str) -> None:
    try:
        cursor.execute("USE memory")
        cursor.execute(f"DETACH {alias}")
    except duckdb.Error:
        # Still attached means still locked for every other process: close the instance.
        logger.exception("could not detach %s; closing this process's DuckDB instance", alias)
        duckdb_instance.discard()
    finally:
        cursor.close()


def _shared(database: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(str(database))
    try:
        connection.execute("SET TimeZone = 'UTC'")
        yield connection
    finally:
        connection.close()


def _alias(database: Path) -> str:
    # One name per file: the in-process lock lets one operation at a time attach it.
    return "audit_" + hashlib.sha1(str(database.resolve()).encode()).hexdigest()[:16]


def _quoted(database: Path) -> str:
    return "'" + str(database).replace("'", "''") + "'"
