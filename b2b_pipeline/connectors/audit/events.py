"""Appending hash-chained rows to ``audit_events`` inside an open transaction.

A batch is staged in DuckDB (the DataFrame is registered, never inserted row by row), its seq
numbers, ids and canonical texts are computed in SQL, the hashes are chained in Python (each
depends on the one before), and the batch goes in with one INSERT from Arrow.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from b2b_pipeline.connectors.audit.hashing import (
    CANONICAL_CONTENT_SQL,
    GENESIS_HASH,
    chain_hashes,
)
from b2b_pipeline.connectors.audit.schema import as_json_sql

EVENT_COLUMNS = ["run_id", "entity", "entity_key", "action", "category", "detail"]
REQUIRED_EVENT_COLUMNS = ("entity", "entity_key", "action")
_OPTIONAL_COLUMNS = ("run_id", "category", "detail")
# One DuckDB row group: big enough that each INSERT is efficient, small enough that hashing a
# slice overlaps usefully with inserting the one before.
_INSERT_SLICE_ROWS = 122_880


def chain_tip(connection: duckdb.DuckDBPyConnection) -> tuple[int, str]:
    """The last seq and hash written (0 and the genesis hash for an empty trail)."""
    # fetchall, not fetchone: DuckDB 2 refuses new work on a connection with an unread result.
    rows = connection.execute("SELECT last_seq, last_hash FROM audit_chain_tip LIMIT 1").fetchall()
    if not rows:
        # No recorded tip (an older file, or a tampered one that verify will report): carry on
        # from the last row so seq stays unique.
        rows = connection.execute(
            "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1"
        ).fetchall()
    return (int(rows[0][0]), str(rows[0][1])) if rows else (0, GENESIS_HASH)


def _detail_as_json_text(detail: pd.Series) -> pd.Series:
    """``detail`` as JSON text; dicts and lists are serialised (strings are taken as JSON)."""
    if pd.api.types.infer_dtype(detail, skipna=True) in ("string", "empty"):
        return detail
    return detail.map(_as_json_text)


def _as_json_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and math.isnan(value):
        return None
    return json.dumps(value, default=str, sort_keys=True)


def _increases_by_one(seq: pa.ChunkedArray) -> bool:
    values = seq.to_numpy()
    return bool((np.diff(values) == 1).all())


def append_events_in(
    connection: duckdb.DuckDBPyConnection,
    events: pd.DataFrame,
    *,
    occurred_at: datetime | None = None,
) -> int:
    """Append ``events`` to the chain within the caller's transaction; returns the count.

    Columns: ``entity``, ``entity_key``, ``action`` (required), ``run_id``, ``category``,
    ``detail`` (JSON text or a dict), and optionally ``event_id`` and ``occurred_at``.
    Rows keep the frame's order.
    """
    if events.empty:
        return 0
    missing = [c for c in REQUIRED_EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise ValueError(f"audit events need the columns {missing}")
    blank = events[list(REQUIRED_EVENT_COLUMNS)].isna().any()
    if blank.any():
        raise ValueError(f"audit events have empty {list(blank[blank].index)}")

    staged = pd.DataFrame({c: events[c].to_numpy() for c in REQUIRED_EVENT_COLUMNS})
    for column in _OPTIONAL_COLUMNS:
        staged[column] = events[column].to_numpy() if column in events.columns else None
    staged["detail"] = _detail_as_json_text(staged["detail"])
    has_event_id = "event_id" in events.columns
    has_occurred_at = "occurred_at" in events.columns
    if has_event_id:
        staged["event_id"] = events["event_id"].to_numpy()
    if has_occurred_at:
        staged["occurred_at"] = pd.to_datetime(events["occurred_at"], utc=True).to_numpy()
    staged["position"] = range(len(staged))

    last_seq, last_hash = chain_tip(connection)
    batch_time = occurred_at or datetime.now(UTC)
    event_id_sql = (
        "coalesce(event_id::VARCHAR, uuid()::VARCHAR)" if has_event_id else ("uuid()::VARCHAR")
    )
    occurred_at_sql = (
        "coalesce(occurred_at::TIMESTAMPTZ, $batch_time)" if has_occurred_at else "$batch_time"
    )
    connection.register("staged_events", staged)
    try:
        rows = connection.sql(
            f"""
            WITH numbered AS (
                SELECT $last_seq + position + 1 AS seq,
                       {event_id_sql} AS event_id,
                       {occurred_at_sql} AS occurred_at,
                       run_id::VARCHAR AS run_id,
                       entity::VARCHAR AS entity,
                       entity_key::VARCHAR AS entity_key,
                       action::VARCHAR AS action,
                       category::VARCHAR AS category,
                       {as_json_sql("coalesce(detail::VARCHAR, '{}')")} AS detail
                FROM staged_events
            )
            SELECT *, {CANONICAL_CONTENT_SQL} AS canonical FROM numbered
            """,
            params={"last_seq": last_seq, "batch_time": batch_time},
        ).to_arrow_table()
    finally:
        connection.unregister("staged_events")

    # DuckDB keeps a scan's row order (preserve_insertion_order), which spares an ORDER BY
    # over the whole batch; the chain must follow seq, so check it and sort only if needed.
    if not _increases_by_one(rows.column("seq")):
        rows = rows.sort_by("seq")
    tip_hash = _insert_chained(connection, rows, last_hash)
    connection.execute("DELETE FROM audit_chain_tip")
    connection.execute(
        "INSERT INTO audit_chain_tip VALUES ($seq, $hash, $now)",
        {"seq": last_seq + rows.num_rows, "hash": tip_hash, "now": datetime.now(UTC)},
    )
    return rows.num_rows


def _insert_chained(connection: duckdb.DuckDBPyConnection, rows: pa.Table, prev_hash: str) -> str:
    """Chain and insert ``rows`` in slices, hashing one slice while DuckDB (which releases the
    GIL) inserts the previous one; returns the last hash."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-insert") as inserter:
        pending: Future[None] | None = None
        for offset in range(0, rows.num_rows, _INSERT_SLICE_ROWS):
            piece = rows.slice(offset, _INSERT_SLICE_ROWS)
            hashes = pa.array(
                chain_hashes(prev_hash, piece.column("canonical").to_pylist()), pa.string()
            )
            prev_hashes = pa.concat_arrays([pa.array([prev_hash], pa.string()), hashes[:-1]])
            prev_hash = hashes[-1].as_py()
            chained = (
                piece.drop_columns(["canonical"])
                .append_column("prev_hash", prev_hashes)
                .append_column("hash", hashes)
            )
            if pending is not None:
                pending.result()
            pending = inserter.submit(_insert, connection, chained)
        if pending is not None:
            pending.result()
    return prev_hash


def _insert(connection: duckdb.DuckDBPyConnection, chained: pa.Table) -> None:
    connection.register("chained_events", chained)
    try:
        connection.execute(
            """
            INSERT INTO audit_events (seq, event_id, occurred_at, run_id, entity, entity_key,
                                      action, category, detail, prev_hash, hash)
            SELECT seq, event_id, occurred_at, run_id, entity, entity_key,
                   action, category, detail, prev_hash, hash
            FROM chained_events
            """
        )
    finally:
        connection.unregister("chained_events")
