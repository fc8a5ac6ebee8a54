"""The exception queue: filing, deciding and closing exceptions, each step in the audit trail.

An exception is keyed by what it is about and why: (entity, entity_key, reason_code). While one
is open or approved, the same problem seen again (the next sync, a failed retry) updates it
rather than filing a duplicate, so the queue shows one line per thing a person must do.

Every change to a row (filed, seen again, approved, resolved, ignored, reopened) also seals the
row's new state in the record ledger (``records.py``) in the same transaction, so an edit of
the queue made in SQL (an exception turned from open to resolved) is caught by ``audit verify``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import duckdb
import pandas as pd

from b2b_pipeline.connectors.audit.events import append_events_in
from b2b_pipeline.connectors.audit.records import seal_states_in
from b2b_pipeline.connectors.audit.schema import as_json_sql
from b2b_pipeline.domain.exceptions import EXCEPTION_COLUMNS, REASONS

EXCEPTION_STATUSES = ("open", "approved", "resolved", "ignored")
# Statuses that still need someone (or the next retry) to act.
_STATUS_ACTIONS = {
    "open": "exception_reopened",
    "approved": "exception_approved",
    "resolved": "exception_resolved",
    "ignored": "exception_ignored",
}
_KEY = ["entity", "entity_key", "reason_code"]

# The audit detail of an exception event: what it is about, in one JSON object.
_EVENT_DETAIL_SQL = """json_object('entity', entity, 'entity_key', entity_key,
    'reason_code', reason_code, 'account_code', account_code, 'message', message{extra})"""


def open_exceptions_in(
    connection: duckdb.DuckDBPyConnection,
    rows: pd.DataFrame,
    run_id: str | None,
    now: datetime,
) -> pd.DataFrame:
    """File ``rows`` (``exception_frame`` rows); returns them with exception_id and is_new."""
    result_columns = [*rows.columns, "exception_id", "is_new"]
    if rows.empty:
        return pd.DataFrame(columns=result_columns)
    missing = [c for c in EXCEPTION_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"exception rows need the columns {missing} (use exception_frame)")
    unknown = set(rows["reason_code"].dropna()) - set(REASONS)
    if unknown or rows[["entity", "entity_key", "reason_code", "message"]].isna().any().any():
        raise ValueError(
            f"exception rows need entity, entity_key, a known reason_code and a message "
            f"(unknown reason codes: {sorted(unknown)})"
        )
    staged = rows[EXCEPTION_COLUMNS].astype(object).copy()
    staged["position"] = range(len(staged))
    connection.register("staged_exceptions", staged)
    try:
        connection.execute(
            """
            CREATE TEMP TABLE filed_exceptions AS
            WITH latest AS (
                SELECT * FROM staged_exceptions
                QUALIFY row_number() OVER (
                    PARTITION BY entity, entity_key, reason_code ORDER BY position DESC) = 1
            ),
            unresolved AS (
                SELECT entity, entity_key, reason_code, min(exception_id) AS exception_id
                FROM exceptions WHERE status IN ('open', 'approved')
                GROUP BY ALL
            )
            SELECT l.entity::VARCHAR AS entity, l.entity_key::VARCHAR AS entity_key,
                   l.account_code::VARCHAR AS account_code, l.category::VARCHAR AS category,
                   l.reason_code::VARCHAR AS reason_code, l.message::VARCHAR AS message,
                   l.payload::VARCHAR AS payload,
                   CASE WHEN u.exception_id IS NULL
                        THEN printf('EX-%06d', nextval('exception_number'))
                        ELSE u.exception_id END AS exception_id,
                   u.exception_id IS NULL AS is_new
            FROM latest AS l LEFT JOIN unresolved AS u USING (entity, entity_key, reason_code)
            """
        )
    finally:
        connection.unregister("staged_exceptions")
    connection.execute(
        f"""
        UPDATE exceptions AS e
        SET updated_at = $now, last_retry_at = $now, attempts = e.attempts + 1,
            last_run_id = $run_id, message = f.message,
            payload = coalesce({as_json_sql("f.payload")}, e.payload),
            account_code = coalesce(f.account_code, e.account_code)
        FROM filed_exceptions AS f
        WHERE e.exception_id = f.exception_id AND NOT f.is_new
        """,
        {"now": now, "run_id": run_id},
    )
    connection.execute(
        f"""
        INSERT INTO exceptions (exception_id, entity, entity_key, account_code, category,
            reason_code, message, status, opened_at, updated_at, payload, run_id, last_run_id,
            attempts)
        SELECT exception_id, entity, entity_key, account_code, category, reason_code, message,
               'open', $now, $now, {as_json_sql("payload")}, $run_id, $run_id, 1
        FROM filed_exceptions WHERE is_new
        ORDER BY exception_id
        """,
        {"now": now, "run_id": run_id},
    )
    events = connection.execute(
        f"""
        SELECT $run_id AS run_id, 'exception' AS entity, exception_id AS entity_key,
               CASE WHEN is_new THEN 'exception_opened' ELSE 'exception_recurred' END AS action,
               category, {_EVENT_DETAIL_SQL.format(extra="")}::VARCHAR AS detail
        FROM filed_exceptions ORDER BY exception_id
        """,
        {"run_id": run_id},
    ).df()
    filed = connection.execute(
        "SELECT entity, entity_key, reason_code, exception_id, is_new FROM filed_exceptions"
    ).df()
    seal_states_in(
        connection,
        "exceptions",
        "SELECT exception_id AS record_key FROM filed_exceptions",
        run_id=run_id,
        now=now,
    )
    connection.execute("DROP TABLE filed_exceptions")
    append_events_in(connection, events, occurred_at=now)
    keyed = rows.astype({c: object for c in _KEY})
    return keyed.merge(filed.astype({c: object for c in _KEY}), on=_KEY, how="left")[result_columns]


def set_exception_status_in(
    connection: duckdb.DuckDBPyConnection,
    exception_id: str,
    status: str,
    by: str,
    *,
    note: str | None,
    decision: dict[str, Any] | str | None,
    run_id: str | None,
    now: datetime,
) -> None:
    if status not in EXCEPTION_STATUSES:
        raise ValueError(f"status must be one of {EXCEPTION_STATUSES}, not {status!r}")
    decision_json = (
        decision if decision is None or isinstance(decision, str) else json.dumps(decision)
    )
    previous = connection.execute(
        "SELECT status FROM exceptions WHERE exception_id = ?", [exception_id]
    ).fetchall()
    if not previous:
        raise KeyError(f"there is no exception {exception_id} in the queue")
    connection.execute(
        f"""
        UPDATE exceptions
        SET status = $status, resolved_by = $by, updated_at = $now, last_run_id = $run_id,
            decision = coalesce({as_json_sql("$decision::VARCHAR")}, decision),
            resolution_note = coalesce($note, resolution_note),
            resolved_at = CASE WHEN $status IN ('resolved', 'ignored') THEN $now END
        WHERE exception_id = $exception_id
        """,
        {
            "status": status,
            "by": by,
            "now": now,
            "run_id": run_id,
            "decision": decision_json,
            "note": note,
            "exception_id": exception_id,
        },
    )
    seal_states_in(
        connection,
        "exceptions",
        "SELECT $exception_id AS record_key",
        params={"exception_id": exception_id},
        run_id=run_id,
        now=now,
    )
    extra = (
        ", 'previous_status', $previous, 'status', status, 'by', resolved_by, "
        "'decision', decision, 'note', resolution_note"
    )
    events = connection.execute(
        f"""
        SELECT $run_id AS run_id, 'exception' AS entity, exception_id AS entity_key,
               $action AS action, category,
               {_EVENT_DETAIL_SQL.format(extra=extra)}::VARCHAR AS detail
        FROM exceptions WHERE exception_id = $exception_id
        """,
        {
            "run_id": run_id,
            "action": _STATUS_ACTIONS[status],
            "previous": previous[0][0],
            "exception_id": exception_id,
        },
    ).df()
    append_events_in(connection, events, occurred_at=now)


def resolve_exceptions_for_in(
    connection: duckdb.DuckDBPyConnection,
    entity: str,
    entity_keys: list[str],
    run_id: str | None,
    now: datetime,
) -> int:
    """Resolve, as "pipeline", the unresolved exceptions of records that have now succeeded."""
    if not entity_keys:
        return 0
    connection.register("succeeded_keys", pd.DataFrame({"entity_key": list(entity_keys)}))
    try:
        resolved = connection.execute(
            """
            UPDATE exceptions
            SET status = 'resolved', resolved_by = 'pipeline', updated_at = $now,
                resolved_at = $now, last_run_id = $run_id,
                resolution_note = coalesce(resolution_note, 'succeeded on retry')
            WHERE entity = $entity AND status IN ('open', 'approved')
              AND entity_key IN (SELECT entity_key::VARCHAR FROM succeeded_keys)
            RETURNING exception_id, entity, entity_key, reason_code, account_code, message,
                      category, decision
            """,
            {"now": now, "run_id": run_id, "entity": entity},
        ).df()
    finally:
        connection.unregister("succeeded_keys")
    if resolved.empty:
        return 0
    connection.register("resolved_exceptions", resolved)
    try:
        seal_states_in(
            connection,
            "exceptions",
            "SELECT exception_id AS record_key FROM resolved_exceptions",
            run_id=run_id,
            now=now,
        )
        extra = ", 'by', 'pipeline', 'decision', decision::JSON"
        events = connection.execute(
            f"""
            SELECT $run_id AS run_id, 'exception' AS entity, exception_id AS entity_key,
                   'exception_resolved' AS action, category,
                   {_EVENT_DETAIL_SQL.format(extra=extra)}::VARCHAR AS detail
            FROM resolved_exceptions ORDER BY exception_id
            """,
            {"run_id": run_id},
        ).df()
    finally:
        connection.unregister("resolved_exceptions")
    append_events_in(connection, events, occurred_at=now)
    return len(resolved)
