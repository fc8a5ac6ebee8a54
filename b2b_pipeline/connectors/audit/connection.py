"""Short-lived DuckDB connections that wait their turn for the file.

DuckDB lets one process write a database file at a time, and a read-only process also holds a
lock that excludes a writer. Several Dagster runs, the CLI and the UI share the audit file, so
every operation opens a connection, does its work in one transaction and closes it, and a lock
held by another process is waited out with bounded exponential backoff and jitter. A conflicting
write from another thread of the same process (DuckDB's optimistic concurrency) is retried the
same way: the transaction rolled back, so running the whole operation again loses nothing.

Within one process, operations on a file are serialised by a thread lock: DuckDB's file lock is
a POSIX lock, which does not exclude the same process, and two threads opening and closing the
file in turn can otherwise end up with two database instances writing it at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
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
    connection = _connect(database, read_only)
    try:
        connection.execute("SET TimeZone = 'UTC'")
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
    finally:
        connection.close()


def _connect(database: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    if read_only and database.exists():
        try:
            return duckdb.connect(str(database), read_only=True)
        except duckdb.ConnectionException as error:
            # This process already holds the file open for writing (another thread's
            # operation): DuckDB refuses a second configuration, so share the writable one.
            if "different configuration" not in str(error):
                raise
    return duckdb.connect(str(database))
