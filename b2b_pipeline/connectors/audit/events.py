"""Appending hash-chained rows to ``audit_events`` inside an open transaction.

A batch is staged in DuckDB (the DataFrame is registered, never inserted row by row), its seq
numbers, ids and canonical texts are computed in SQL, the hashes are chained in Python (each
depends on the one before), and the rows go in by slices of one row group, each INSERTed from
Arrow while the next slice is hashed (``_insert_chained``).

Measured on 1M events (``benchmarks/bench_audit.py``): the sequential hash loop is about a
second of one core, and the INSERT of the chained rows alone costs about what a plain insert of
the whole frame does, so an append costs about twice a plain insert. Tried and not kept:
inserting without keeping row order (DuckDB then writes on both cores, but the hash loop needs
one of the two, and it measured no faster), larger slices (less overlap), and staging on a
second connection (the pandas scan holds the GIL the hash loop needs).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
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
    chain_arrays,
)
from b2b_pipeline.connectors.audit.schema import as_json_sql

EVENT_COLUMNS = ["run_id", "entity", "entity_key", "action", "category", "detail"]
REQUIRED_EVENT_COLUMNS = ("entity", "entity_key", "action")
_OPTIONAL_COLUMNS = ("run_id", "category", "detail")
# One DuckDB row group: big enough that each INSERT is efficient, small enough that hashing a
# slice overlaps usefully with inserting the one before.
_INSERT_SLICE_ROWS = 122_880
# Staged on its own first, so that hashing starts while DuckDB stages the rest.
_FIRST_STAGE_ROWS = 65_536


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
    staging_sql = f"""
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
    """

    def stage(frame: pd.DataFrame) -> pa.Table:
        connection.register("staged_events", frame)
        try:
            rows = connection.sql(
                staging_sql, params={"last_seq": last_seq, "batch_time": batch_time}
            ).to_arrow_table()
        finally:
            connection.unregister("staged_events")
        # Checked on the staged Arrow columns (free) rather than with pandas' isna (0.15 s a
        # million rows); the transaction rolls back whatever was inserted before.
        blank = [c for c in REQUIRED_EVENT_COLUMNS if rows.column(c).null_count]
        if blank:
            raise ValueError(f"audit events have empty {blank}")
        # DuckDB keeps a scan's row order (preserve_insertion_order), which spares an ORDER
        # BY; the chain must follow seq, so check it and sort only if needed.
        return rows if _increases_by_one(rows.column("seq")) else rows.sort_by("seq")

    tip_hash = _insert_chained(connection, staged, stage, last_hash)
    connection.execute("DELETE FROM audit_chain_tip")
    connection.execute(
        "INSERT INTO audit_chain_tip VALUES ($seq, $hash, $now)",
        {"seq": last_seq + len(staged), "hash": tip_hash, "now": datetime.now(UTC)},
    )
    return len(staged)


def _insert_chained(
    connection: duckdb.DuckDBPyConnection,
    staged: pd.DataFrame,
    stage: Callable[[pd.DataFrame], pa.Table],
    prev_hash: str,
) -> str:
    """Stage, chain and insert ``staged``; returns the last hash.

    The hashes are a sequential Python loop, so everything DuckDB does (which releases the
    GIL) runs beside it on one worker thread, the only one using the connection meanwhile: the
    first slice is staged, then the rest is staged while the first is hashed, and each slice is
    inserted while the next one is hashed.
    """
    first = stage(staged.iloc[:_FIRST_STAGE_ROWS])
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-insert") as worker:
        rest: Future[pa.Table] | None = (
            worker.submit(stage, staged.iloc[_FIRST_STAGE_ROWS:])
            if len(staged) > _FIRST_STAGE_ROWS
            else None
        )
        pending: Future[None] | None = None
        for rows in (first, rest):
            if isinstance(rows, Future):
                rows = rows.result()
            if rows is None:
                continue
            for offset in range(0, rows.num_rows, _INSERT_SLICE_ROWS):
                piece = rows.slice(offset, _INSERT_SLICE_ROWS)
                prev_hashes, hashes = chain_arrays(
                    prev_hash, piece.column("canonical").combine_chunks()
                )
                prev_hash = hashes[-1].as_py()
                chained = (
                    piece.drop_columns(["canonical"])
                    .append_column("prev_hash", prev_hashes)
                    .append_column("hash", hashes)
                )
                if pending is not None:
                    pending.result()
                pending = worker.submit(_insert, connection, chained)
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
