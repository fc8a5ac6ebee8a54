"""The record ledger: the sealed state of every exception and order posting.

``exceptions`` and ``order_postings`` are tables the store updates in place, so the events
chain alone cannot tell whether today's row is the one the store wrote: an exception edited
from ``open`` to ``resolved`` in SQL, or a posting deleted, leaves every event intact. So each
write that changes rows of these tables also appends, in the same transaction, one row per
changed record to ``audit_record_states``: the table, the record's key and the SHA-256 of the
row's full content (:data:`SEALED_TABLES` lists the columns, in order). The ledger is gapless
(``seq``) and each write transaction's ledger rows are digested into that transaction's sealed
checkpoint (``checkpoints.py``), so the ledger itself cannot be edited without the key.

``audit verify`` then compares each table with the ledger's latest state per key: a row whose
content hash differs was changed outside the store, a sealed key with no row was deleted, a row
with no sealed state (or a second row for one key) was added.

Row hashes are computed in DuckDB over only the rows a write touched (a join on the keys the
write names), so recording 1,000 postings costs the same with 10 or 10 million on file. A new
column of these tables is not covered until it is added to :data:`SEALED_TABLES`, and adding it
changes every row's hash: such a release must re-seal the current rows (:func:`seal_states_in`
over all keys) in its migration.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from b2b_pipeline.connectors.audit.hashing import field_sql, timestamp_sql


@dataclass(frozen=True)
class SealedTable:
    name: str
    key: str
    text_columns: tuple[str, ...]
    timestamp_columns: frozenset[str]
    # Where a person reads about the row: "exception EX-000001", "order posting SL-1".
    label: str
    # The column verify quotes when a row was changed (the one most worth editing).
    hint: str

    def state_hash_sql(self, alias: str) -> str:
        """SQL for the SHA-256 of a row of this table (``alias`` names the table in FROM)."""
        fields = [
            timestamp_sql(f"{alias}.{column}")
            if column in self.timestamp_columns
            else field_sql(f"{alias}.{column}::VARCHAR")
            for column in self.text_columns
        ]
        return f"sha256(concat_ws('|', {', '.join(fields)}))"


SEALED_TABLES = {
    table.name: table
    for table in (
        SealedTable(
            name="exceptions",
            key="exception_id",
            text_columns=(
                "exception_id",
                "entity",
                "entity_key",
                "account_code",
                "category",
                "reason_code",
                "message",
                "status",
                "opened_at",
                "updated_at",
                "resolved_by",
                "payload",
                "run_id",
                "last_run_id",
                "attempts",
                "last_retry_at",
                "decision",
                "resolution_note",
                "resolved_at",
            ),
            timestamp_columns=frozenset(
                {"opened_at", "updated_at", "last_retry_at", "resolved_at"}
            ),
            label="exception",
            hint="status",
        ),
        SealedTable(
            name="order_postings",
            key="portal_order_id",
            text_columns=(
                "portal_order_id",
                "erp_order_no",
                "account_code",
                "posted_at",
                "currency",
                "portal_gross",
                "erp_gross",
                "payment_method",
                "erp_status",
                "run_id",
                "recorded_at",
            ),
            timestamp_columns=frozenset({"posted_at", "recorded_at"}),
            label="order posting for portal order",
            hint="erp_gross",
        ),
    )
}

# One ledger row as the text a checkpoint digests: every column, length-prefixed, one line each.
LEDGER_LINE_SQL = (
    "concat_ws('|', seq::VARCHAR, "
    + ", ".join(
        [
            field_sql("table_name"),
            field_sql("record_key"),
            "coalesce(state_hash, '-')",
            timestamp_sql("recorded_at"),
            field_sql("run_id"),
        ]
    )
    + ") || chr(10)"
)
EMPTY_DIGEST = hashlib.sha256(b"").hexdigest()


def last_seq(connection: duckdb.DuckDBPyConnection) -> int:
    return int(
        connection.execute("SELECT coalesce(max(seq), 0) FROM audit_record_states").fetchall()[0][0]
    )


def seal_states_in(
    connection: duckdb.DuckDBPyConnection,
    table: str,
    keys_sql: str | None = None,
    *,
    run_id: str | None,
    now: datetime,
    params: dict[str, Any] | None = None,
    rows_sql: str | None = None,
) -> int:
    """Append the current state of the rows of ``table`` whose keys ``keys_sql`` selects (a
    query with one column, ``record_key``) to the ledger; returns how many were sealed.

    Call it after the write, in the same transaction. A key with no row left is sealed as
    removed (state NULL). ``rows_sql``, instead of ``keys_sql``, is a query giving exactly the
    rows just written, with the table's columns and types and one row per key: they are
    hashed as they are, which spares joining the table (a million postings: half a second).
    """
    sealed = SEALED_TABLES[table]
    if rows_sql is not None:
        source = f"""
            SELECT t.{sealed.key}::VARCHAR AS record_key, {sealed.state_hash_sql("t")} AS state_hash
            FROM ({rows_sql}) AS t
        """
    elif keys_sql is not None:
        source = f"""
            SELECT k.record_key,
                   CASE WHEN t.{sealed.key} IS NULL THEN NULL
                        ELSE {sealed.state_hash_sql("t")} END AS state_hash
            FROM (SELECT DISTINCT record_key::VARCHAR AS record_key FROM ({keys_sql})) AS k
            LEFT JOIN {sealed.name} AS t ON t.{sealed.key} = k.record_key
        """
    else:
        raise ValueError("seal_states_in needs keys_sql or rows_sql")
    inserted = connection.execute(
        f"""
        INSERT INTO audit_record_states
        SELECT $base + row_number() OVER () AS seq, $table AS table_name, record_key,
               state_hash, $now AS recorded_at, $run_id AS run_id
        FROM ({source})
        """,
        {
            **(params or {}),
            "base": last_seq(connection),
            "table": table,
            "now": now,
            "run_id": run_id,
        },
    ).fetchall()
    return int(inserted[0][0]) if inserted else 0


def seal_unsealed_in(
    connection: duckdb.DuckDBPyConnection, *, run_id: str | None, now: datetime
) -> None:
    """Seal the rows no ledger entry covers yet: the rows of a file written before the
    ledger existed, adopted at its first sealed write."""
    for sealed in SEALED_TABLES.values():
        seal_states_in(
            connection,
            sealed.name,
            f"""SELECT {sealed.key} AS record_key FROM {sealed.name}
                WHERE {sealed.key} NOT IN (
                    SELECT record_key FROM audit_record_states WHERE table_name = $table_name)""",
            params={"table_name": sealed.name},
            run_id=run_id,
            now=now,
        )


def ledger_lines(
    connection: duckdb.DuckDBPyConnection, *, after: int = 0, upto: int | None = None
) -> pa.Table:
    """seq and the digested text of the ledger rows after ``after`` (up to ``upto``), in
    seq order."""
    return connection.sql(
        f"""
        SELECT seq, {LEDGER_LINE_SQL} AS line FROM audit_record_states
        WHERE seq > $after AND ($upto IS NULL OR seq <= $upto)
        ORDER BY seq
        """,
        params={"after": after, "upto": upto},
    ).to_arrow_table()


def range_digests(lines: pa.ChunkedArray | pa.Array, bounds: list[tuple[int, int]]) -> list[str]:
    """SHA-256 of the concatenated ``lines[start:stop]`` for each (start, stop) of ``bounds``
    (positions in ``lines``), hashing Arrow's buffer directly rather than row by row."""
    if isinstance(lines, pa.ChunkedArray):
        lines = (
            lines.cast(pa.large_string()).combine_chunks()
            if lines.num_chunks
            else pa.array([], pa.large_string())
        )
    elif lines.type != pa.large_string():
        lines = lines.cast(pa.large_string())
    if len(lines) == 0:
        return [EMPTY_DIGEST for _ in bounds]
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[
        lines.offset : lines.offset + len(lines) + 1
    ]
    data = memoryview(lines.buffers()[2])
    digests = []
    for start, stop in bounds:
        if stop <= start:
            digests.append(EMPTY_DIGEST)
            continue
        digests.append(hashlib.sha256(data[offsets[start] : offsets[stop]]).hexdigest())
    return digests


def range_digest(connection: duckdb.DuckDBPyConnection, after: int, upto: int) -> str:
    """The digest a checkpoint seals: the ledger rows with seq in (after, upto]."""
    if upto <= after:
        return EMPTY_DIGEST
    lines = ledger_lines(connection, after=after, upto=upto).column("line")
    return range_digests(lines, [(0, len(lines))])[0]
