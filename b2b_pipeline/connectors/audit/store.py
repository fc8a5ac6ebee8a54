"""The audit store: the DuckDB file finance and operations reconcile from.

``AuditStore`` is the one way the pipeline writes ``audit_events`` (hash-chained, append-only),
the exception queue, reconciliation lines, order postings and price history
(contracts/audit-and-finance.md names them all). Each call opens a short-lived connection and
does its work in one transaction, so an exception is never filed without its audit event, and a
lock held by another process is waited for (``connection.py``), never lost.

Every write transaction that appended events or changed an exception or a posting ends with a
keyed checkpoint (``checkpoints.py``; the key: ``keys.py``), and once it has committed, the new
chain head is appended to the anchor sinks (``anchors.py``; by default ``data/audit.anchors``).
``verify()`` checks all of it (``verify.py``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pandas as pd

from b2b_pipeline.connectors.audit import checkpoints, exception_queue, price_history, records
from b2b_pipeline.connectors.audit.anchors import AnchorSink, ChainHead, default_anchor_sinks
from b2b_pipeline.connectors.audit.connection import (
    DEFAULT_LOCK_WAIT_SECONDS,
    run_with_lock_retry,
)
from b2b_pipeline.connectors.audit.events import append_events_in
from b2b_pipeline.connectors.audit.keys import AuditKey, load_key, load_or_create_key
from b2b_pipeline.connectors.audit.schema import EXPORTED_TABLES
from b2b_pipeline.connectors.audit.setup import ensure_audit_schema
from b2b_pipeline.connectors.audit.verify import (
    AnchorsRead,
    VerifyResult,
    read_trail_id,
    verify_trail,
)
from b2b_pipeline.domain.reconciliation import RECONCILIATION_LINE_COLUMNS

T = TypeVar("T")
logger = logging.getLogger(__name__)

# The contract's reconciliation_lines columns, as the domain produces them (month is the key).
RECONCILIATION_COLUMNS = [c for c in RECONCILIATION_LINE_COLUMNS if c != "month"]
ORDER_POSTING_COLUMNS = [
    "portal_order_id",
    "erp_order_no",
    "account_code",
    "posted_at",
    "currency",
    "portal_gross",
    "erp_gross",
    "payment_method",
    "erp_status",
]
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")

__all__ = ["AuditStore", "VerifyResult"]


def _conformed(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``frame`` with exactly ``columns`` (absent ones NULL) and a ``position`` column."""
    # The columns keep their pandas dtypes: ``to_numpy()`` turns a nullable Int64 with a gap
    # (an ERP order number missing on some lines) into float, stored as '12.0' in a VARCHAR.
    conformed = pd.DataFrame(
        {c: frame[c].reset_index(drop=True) if c in frame.columns else None for c in columns},
        index=range(len(frame)),
    )
    conformed["position"] = range(len(conformed))
    return conformed


class AuditStore:
    """The audit trail, exception queue and finance tables in one DuckDB file."""

    def __init__(
        self,
        path: Path | str,
        *,
        lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS,
        key: AuditKey | None = None,
        anchors: Sequence[AnchorSink] | None = None,
    ) -> None:
        """``key`` and ``anchors`` default to the environment's (``keys.py``, ``anchors.py``),
        looked up at each use."""
        self.path = Path(path)
        self.lock_wait_seconds = lock_wait_seconds
        self._schema_ready = False
        self._key = key
        self._anchors = list(anchors) if anchors is not None else None

    def __repr__(self) -> str:
        return f"AuditStore({str(self.path)!r})"

    # -- plumbing ---------------------------------------------------------------------------

    def _write(self, work: Callable[[duckdb.DuckDBPyConnection, datetime], T]) -> T:
        """Run ``work(connection, now)`` in one write transaction, waiting out other writers;
        the transaction ends with its keyed checkpoint, anchored once it has committed."""
        self._ensure_ready()
        audit_file = str(self.path.resolve())

        def transaction(connection: duckdb.DuckDBPyConnection) -> tuple[T, ChainHead | None]:
            now = datetime.now(UTC)
            checkpoints.prepare_in(
                connection, now=now, anchored=self._anchored, audit_file=audit_file
            )
            result = work(connection, now)
            head = checkpoints.seal_in(
                connection, key_source=self._key_for, now=now, audit_file=audit_file
            )
            return result, head

        result, head = run_with_lock_retry(
            self.path, transaction, read_only=False, max_wait_seconds=self.lock_wait_seconds
        )
        if head is not None:
            self._anchor(head, self.anchor_sinks)
        return result

    @property
    def anchor_sinks(self) -> list[AnchorSink]:
        return self._anchors if self._anchors is not None else default_anchor_sinks()

    def _key_for(self, sealed: bool) -> AuditKey | None:
        """The sealing key; created (demo default) only for a trail never sealed."""
        if self._key is not None:
            return self._key
        return load_key() if sealed else load_or_create_key()

    def _anchored(self) -> bool:
        """Whether any anchor names this file (asked only of a file with no checkpoint)."""
        audit_file = str(self.path.resolve())
        return any(sink.heads(None, audit_file).heads for sink in self.anchor_sinks)

    @staticmethod
    def _anchor(head: ChainHead, sinks: Sequence[AnchorSink]) -> None:
        # The write has committed: failing it now would not undo it, so a sink that cannot
        # take the head is reported, and verify shows the checkpoints not anchored yet.
        for sink in sinks:
            try:
                sink.write(head)
            except Exception as error:
                logger.error(
                    "could not anchor audit checkpoint %d in %s (%s: %s); a rollback to an "
                    "earlier checkpoint would not be noticed until the next anchor",
                    head.checkpoint,
                    sink.description,
                    type(error).__name__,
                    error,
                )

    def _read(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        self._ensure_ready()
        return run_with_lock_retry(
            self.path, work, read_only=True, max_wait_seconds=self.lock_wait_seconds
        )

    def _ensure_ready(self) -> None:
        if not self._schema_ready:
            self.ensure_schema()

    def ensure_schema(self) -> None:
        """Create the tables and views if this file does not have the current schema yet.

        A read-only look at the schema stamp when it does (``setup.py``): a reader never
        takes the writer's lock to start.
        """
        ensure_audit_schema(self.path, lock_wait_seconds=self.lock_wait_seconds)
        self._schema_ready = True

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> pd.DataFrame:
        """Run a read-only query (the CLI and the UI read the views through this)."""
        return self._read(lambda connection: connection.execute(sql, params).df())

    # -- named reads (the Dagster layer and the CLI ask by name; the SQL stays here) ---------

    def posted_order_ids(self, order_ids: list[str]) -> set[str]:
        """Which of these portal orders have a posting record (``order_postings``)."""
        found = self.query(
            "SELECT portal_order_id FROM order_postings WHERE list_contains($ids, portal_order_id)",
            {"ids": order_ids},
        )
        return set(found["portal_order_id"].astype(str))

    def posted_erp_gross(self, order_ids: list[str]) -> pd.DataFrame:
        """portal_order_id, erp_gross: what the pipeline posted for these orders."""
        return self.query(
            "SELECT portal_order_id, erp_gross FROM order_postings "
            "WHERE list_contains($ids, portal_order_id)",
            {"ids": order_ids},
        )

    def order_postings(self) -> pd.DataFrame:
        """Every posting record, as finance reads it (``v_order_postings``)."""
        return self.query("SELECT * FROM v_order_postings")

    def approval_events(self) -> pd.DataFrame:
        """exception_id, approved_by for every approval in the audit trail, oldest first."""
        return self.query(
            """
            SELECT entity_key AS exception_id, detail->>'by' AS approved_by
            FROM audit_events
            WHERE entity = 'exception' AND action = 'exception_approved'
            ORDER BY seq
            """
        )

    def last_sync_at(self, entity_key: str) -> Any:
        """When a sync of ``entity_key`` (e.g. ``inventory``) was last recorded, or None."""
        return self.query(
            "SELECT max(occurred_at) AS at FROM audit_events "
            "WHERE entity = 'sync' AND entity_key = $key",
            {"key": entity_key},
        )["at"].iloc[0]

    def open_exceptions_of_run(self, run_id: str, entities: list[str]) -> pd.DataFrame:
        """entity_key, message of the exceptions a run left open for these entities."""
        return self.query(
            "SELECT entity_key, message FROM exceptions "
            "WHERE last_run_id = $run_id AND status IN ('open', 'approved') "
            "AND list_contains($entities, entity) ORDER BY opened_at, exception_id",
            {"run_id": run_id, "entities": entities},
        )

    # -- audit trail ------------------------------------------------------------------------

    def append_events(self, events: pd.DataFrame) -> int:
        """Append events (run_id, entity, entity_key, action, category, detail as JSON text)
        to the hash chain in one bulk write; returns how many were written."""
        if events.empty:
            return 0
        return self._write(lambda connection, now: append_events_in(connection, events))

    def record_event(
        self,
        entity: str,
        entity_key: str,
        action: str,
        *,
        run_id: str | None = None,
        category: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Append one event (for rare, single decisions; batches go through append_events)."""
        self.append_events(
            pd.DataFrame(
                [
                    {
                        "run_id": run_id,
                        "entity": entity,
                        "entity_key": entity_key,
                        "action": action,
                        "category": category,
                        "detail": json.dumps(detail or {}, default=str, sort_keys=True),
                    }
                ]
            )
        )

    def events(
        self,
        *,
        entity: str | None = None,
        entity_key: str | None = None,
        action: str | None = None,
        run_id: str | None = None,
    ) -> pd.DataFrame:
        """Audit events in seq order, filtered by whichever arguments are given."""
        filters = {"entity": entity, "entity_key": entity_key, "action": action, "run_id": run_id}
        given = {name: value for name, value in filters.items() if value is not None}
        where = " AND ".join(f"{name} = ${name}" for name in given) or "TRUE"
        return self.query(f"SELECT * FROM audit_events WHERE {where} ORDER BY seq", given)

    def verify(self, *, key: AuditKey | None = None) -> VerifyResult:
        """Every check of ``verify.py``: the events chain, the keyed seals, the exceptions and
        postings against their sealed states, and the anchors outside the file. Each problem
        names the table and the row (seq, checkpoint or key)."""
        key = key or self._key or load_key()
        trail_id = self._read(read_trail_id)
        # The anchors first, the file after: a write committed in between is then ahead of its
        # anchor, never behind it.
        audit_file = str(self.path.resolve())
        readings = [
            (sink.description, sink.heads(trail_id, audit_file)) for sink in self.anchor_sinks
        ]
        anchors = AnchorsRead(trail_id=trail_id, readings=readings)
        return self._read(lambda connection: verify_trail(connection, key=key, anchors=anchors))

    def chain_head(self) -> ChainHead | None:
        """The newest sealed checkpoint (None for a trail never sealed)."""
        audit_file = str(self.path.resolve())
        return self._read(lambda connection: checkpoints.head(connection, audit_file))

    def anchor_chain_head(self, sinks: Sequence[AnchorSink] | None = None) -> ChainHead | None:
        """Write the newest sealed checkpoint to ``sinks`` (default: this store's) and return
        it. Every write already anchors its own checkpoint; this is for another sink (the ERP,
        a ticket) or after a sink was unavailable. Errors of the sinks are raised."""
        head = self.chain_head()
        if head is not None:
            for sink in self.anchor_sinks if sinks is None else sinks:
                sink.write(head)
        return head

    # -- exception queue --------------------------------------------------------------------

    def open_exceptions(self, rows: pd.DataFrame, run_id: str | None) -> pd.DataFrame:
        """File exception rows (``exception_frame``); an unresolved exception with the same
        (entity, entity_key, reason_code) is updated, not duplicated. Returns the rows with
        ``exception_id`` and ``is_new``; each one is recorded in the audit trail."""
        if rows.empty:
            return rows.assign(exception_id=pd.Series(dtype=object), is_new=pd.Series(dtype=bool))
        return self._write(
            lambda connection, now: exception_queue.open_exceptions_in(
                connection, rows, run_id, now
            )
        )

    def exceptions(
        self, status: str | Iterable[str] | None = None, category: str | None = None
    ) -> pd.DataFrame:
        """The queue, oldest first; ``status`` is one status or several."""
        statuses = [status] if isinstance(status, str) else list(status or [])
        return self.query(
            """
            SELECT * FROM exceptions
            WHERE (len($statuses) = 0 OR list_contains($statuses, status))
              AND ($category IS NULL OR category = $category)
            ORDER BY opened_at, exception_id
            """,
            {"statuses": statuses, "category": category},
        )

    def exceptions_for(
        self, entity: str, entity_keys: Iterable[str], status: str | Iterable[str] | None = None
    ) -> pd.DataFrame:
        """The queue rows of these entities (``entity_key`` in ``entity_keys``), oldest first:
        what an order run needs of a queue that may hold 100,000 rows."""
        statuses = [status] if isinstance(status, str) else list(status or [])
        keys = pd.DataFrame(
            {"entity_key": pd.Series([str(k) for k in entity_keys], dtype="string")}
        )

        def fetch(connection: duckdb.DuckDBPyConnection) -> pd.DataFrame:
            connection.register("wanted_keys", keys)
            return connection.execute(
                """
                SELECT e.* FROM exceptions AS e
                WHERE e.entity = $entity
                  AND e.entity_key IN (SELECT entity_key FROM wanted_keys)
                  AND (len($statuses) = 0 OR list_contains($statuses, e.status))
                ORDER BY e.opened_at, e.exception_id
                """,
                {"entity": entity, "statuses": statuses},
            ).df()

        return self._read(fetch)

    def exception(self, exception_id: str) -> dict[str, Any] | None:
        """One exception as a dict (``payload`` and ``decision`` as JSON text), or None."""

        def fetch(connection: duckdb.DuckDBPyConnection) -> dict[str, Any] | None:
            cursor = connection.execute(
                "SELECT * FROM exceptions WHERE exception_id = ?", [exception_id]
            )
            rows = cursor.fetchall()
            if not rows:
                return None
            return dict(zip([d[0] for d in cursor.description], rows[0], strict=True))

        return self._read(fetch)

    def set_exception_status(
        self,
        exception_id: str,
        status: str,
        by: str,
        note: str | None = None,
        decision: dict[str, Any] | str | None = None,
        run_id: str | None = None,
    ) -> None:
        """Approve, resolve, ignore or reopen an exception, recording who decided and what
        (e.g. ``{"accept": "erp_price"}``); raises KeyError for an unknown exception."""
        self._write(
            lambda connection, now: exception_queue.set_exception_status_in(
                connection,
                exception_id,
                status,
                by,
                note=note,
                decision=decision,
                run_id=run_id,
                now=now,
            )
        )

    def resolve_exceptions_for(
        self, entity: str, entity_keys: Iterable[str], run_id: str | None
    ) -> int:
        """Resolve (by "pipeline") the open or approved exceptions of records that have now
        gone through; returns how many were resolved."""
        keys = [str(key) for key in entity_keys]
        if not keys:
            return 0
        return self._write(
            lambda connection, now: exception_queue.resolve_exceptions_for_in(
                connection, entity, keys, run_id, now
            )
        )

    # -- finance ----------------------------------------------------------------------------

    def write_reconciliation_lines(
        self, month: str, lines: pd.DataFrame, run_id: str | None
    ) -> None:
        """Replace ``month``'s reconciliation lines (a rerun replaces, never appends) and record
        one ``reconciliation`` event with the count of each outcome."""
        if not _MONTH.match(month):
            raise ValueError(f"month must be YYYY-MM, not {month!r}")
        staged = _conformed(lines, RECONCILIATION_COLUMNS)
        if staged["outcome"].isna().any():
            raise ValueError("every reconciliation line needs an outcome")

        def write(connection: duckdb.DuckDBPyConnection, now: datetime) -> None:
            replaced = connection.execute(
                "DELETE FROM reconciliation_lines WHERE month = ?", [month]
            ).fetchall()[0][0]
            connection.register("staged_lines", staged)
            try:
                connection.execute(
                    """
                    INSERT INTO reconciliation_lines
                    SELECT $month, portal_order_id::VARCHAR, erp_order_no::VARCHAR,
                           account_code::VARCHAR, currency::VARCHAR, portal_gross, erp_gross,
                           difference, outcome::VARCHAR, reason::VARCHAR, $run_id, $now
                    FROM staged_lines ORDER BY position
                    """,
                    {"month": month, "run_id": run_id, "now": now},
                )
                events = connection.execute(
                    """
                    SELECT $run_id AS run_id, 'reconciliation' AS entity, $month AS entity_key,
                           'reconciled' AS action, NULL AS category,
                           json_object('lines', coalesce(sum(n), 0), 'replaced_lines', $replaced,
                                       'outcomes', coalesce(json_group_object(outcome, n),
                                                            '{}'::JSON))::VARCHAR AS detail
                    FROM (SELECT outcome, count(*) AS n FROM staged_lines GROUP BY outcome
                          ORDER BY outcome)
                    """,
                    {"run_id": run_id, "month": month, "replaced": replaced},
                ).df()
            finally:
                connection.unregister("staged_lines")
            append_events_in(connection, events, occurred_at=now)

        self._write(write)

    def reconciliation_lines(self, month: str) -> pd.DataFrame:
        return self.query(
            "SELECT * FROM reconciliation_lines WHERE month = ? ORDER BY portal_order_id", [month]
        )

    def month_end_reconciliation(self, month: str | None = None) -> pd.DataFrame:
        """``v_month_end_reconciliation`` for one month (or all), by account and currency."""
        return self.query(
            """
            SELECT * FROM v_month_end_reconciliation
            WHERE $month IS NULL OR month = $month
            ORDER BY month, account_code, currency
            """,
            {"month": month},
        )

    def record_order_postings(
        self, postings: pd.DataFrame, run_id: str | None, *, resolve_exceptions: bool = False
    ) -> None:
        """Record orders posted to the ERP (``v_order_postings`` columns); idempotent on
        ``portal_order_id``: recording an order again updates it and keeps its first
        ``posted_at``. ``resolve_exceptions``: in the same transaction, resolve the open or
        approved exceptions of these orders (as :meth:`resolve_exceptions_for`), which have
        now gone through."""
        if postings.empty:
            return
        if "portal_order_id" not in postings.columns or postings["portal_order_id"].isna().any():
            raise ValueError("every order posting needs a portal_order_id")
        # The last row of an order wins (dropping duplicates in pandas is cheaper than a window).
        staged = _conformed(postings, ORDER_POSTING_COLUMNS).drop_duplicates(
            "portal_order_id", keep="last"
        )

        def write(connection: duckdb.DuckDBPyConnection, now: datetime) -> None:
            connection.register("staged_postings", staged)
            try:
                connection.execute(
                    """
                    CREATE TEMP TABLE incoming_postings AS
                    SELECT s.portal_order_id::VARCHAR AS portal_order_id,
                           coalesce(s.erp_order_no::VARCHAR, o.erp_order_no) AS erp_order_no,
                           coalesce(s.account_code::VARCHAR, o.account_code) AS account_code,
                           coalesce(o.posted_at, s.posted_at::TIMESTAMPTZ, $now) AS posted_at,
                           coalesce(s.currency::VARCHAR, o.currency) AS currency,
                           coalesce(s.portal_gross::DECIMAL(18, 4), o.portal_gross)
                               AS portal_gross,
                           coalesce(s.erp_gross::DECIMAL(18, 4), o.erp_gross) AS erp_gross,
                           coalesce(s.payment_method::VARCHAR, o.payment_method)
                               AS payment_method,
                           coalesce(s.erp_status::VARCHAR, o.erp_status) AS erp_status
                    FROM staged_postings AS s
                    LEFT JOIN order_postings AS o
                           ON o.portal_order_id = s.portal_order_id::VARCHAR
                    """,
                    {"now": now},
                )
            finally:
                connection.unregister("staged_postings")
            connection.execute(
                """
                DELETE FROM order_postings
                WHERE portal_order_id IN (SELECT portal_order_id FROM incoming_postings)
                """
            )
            connection.execute(
                """
                INSERT INTO order_postings
                SELECT *, $run_id, $now FROM incoming_postings ORDER BY portal_order_id
                """,
                {"run_id": run_id, "now": now},
            )
            records.seal_states_in(
                connection,
                "order_postings",
                rows_sql="SELECT *, $run_id AS run_id, $now AS recorded_at FROM incoming_postings",
                run_id=run_id,
                now=now,
            )
            connection.execute("DROP TABLE incoming_postings")
            if resolve_exceptions:
                exception_queue.resolve_exceptions_for_in(
                    connection,
                    "order",
                    staged["portal_order_id"].astype(str).tolist(),
                    run_id,
                    now,
                )

        self._write(write)

    # -- price history ----------------------------------------------------------------------

    def record_prices(self, df: pd.DataFrame, run_id: str | None = None) -> None:
        """Record the price breaks pushed to the portal in one sync (slug, sku, min_quantity,
        price (NULL = removed), currency, pushed_at), closing the validity of what they
        replace."""
        if df.empty:
            return
        self._write(
            lambda connection, now: price_history.record_prices_in(
                connection, df, run_id=run_id, now=now
            )
        )

    def record_customer_lists(self, df: pd.DataFrame, run_id: str | None = None) -> None:
        """Record the price lists and discount each account was given in the portal."""
        if df.empty:
            return
        self._write(
            lambda connection, now: price_history.record_customer_lists_in(
                connection, df, run_id=run_id, now=now
            )
        )

    def price_on(self, account_code: str, sku: str, on: date | datetime) -> pd.DataFrame:
        """The price breaks ``account_code`` saw for ``sku`` on ``on`` (a UTC day, or an
        instant), each with the list it came from and the price after discount."""
        return self._read(
            lambda connection: price_history.price_on(connection, account_code, sku, on)
        )

    # -- warehouse export -------------------------------------------------------------------

    def export_parquet(self, folder: Path | str) -> list[Path]:
        """Copy every table to ``folder/<table>.parquet`` for a shared warehouse."""
        target = Path(folder)
        target.mkdir(parents=True, exist_ok=True)

        def export(connection: duckdb.DuckDBPyConnection) -> list[Path]:
            written = []
            for table in EXPORTED_TABLES:
                path = target / f"{table}.parquet"
                escaped = str(path).replace("'", "''")
                connection.execute(f"COPY {table} TO '{escaped}' (FORMAT parquet)")
                written.append(path)
            return written

        return self._read(export)

    # -- reads for the command line and the console -----------------------------------------
    # The exception queue as people read it: with the order number the buyer sees (from
    # order_tracking) and the age, filtered in SQL so a queue of 100,000 stays quick.

    _QUEUE_SELECT = """
        SELECT e.*, t.visible_id AS order_number,
               round((epoch(current_timestamp) - epoch(e.opened_at)) / 3600.0, 1) AS age_hours
        FROM exceptions AS e
        LEFT JOIN order_tracking AS t
               ON e.entity = 'order' AND t.portal_order_id = e.entity_key
    """

    def exception_queue(
        self,
        *,
        statuses: Sequence[str] = (),
        category: str | None = None,
        reason_code: str | None = None,
        account_code: str | None = None,
        older_than_hours: float | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """The queue, oldest first, with ``order_number`` and ``age_hours``; category and
        reason match whatever their case; no statuses means every status."""
        limit_sql = f"LIMIT {int(limit)}" if limit is not None else ""
        return self.query(
            f"""
            {self._QUEUE_SELECT}
            WHERE (len($statuses) = 0 OR list_contains($statuses, e.status))
              AND ($category IS NULL OR upper(e.category) = upper($category))
              AND ($reason IS NULL OR upper(e.reason_code) = upper($reason))
              AND ($account IS NULL OR e.account_code = $account)
              AND ($hours IS NULL
                   OR epoch(current_timestamp) - epoch(e.opened_at) >= $hours * 3600)
            ORDER BY e.opened_at, e.exception_id
            {limit_sql}
            """,
            {
                "statuses": list(statuses),
                "category": category,
                "reason": reason_code,
                "account": account_code,
                "hours": older_than_hours,
            },
        )

    def exceptions_by_id(self, exception_ids: Sequence[str]) -> pd.DataFrame:
        """These exceptions (any status), as :meth:`exception_queue` shows them."""
        return self.query(
            f"{self._QUEUE_SELECT} WHERE list_contains($ids, e.exception_id) "
            "ORDER BY e.opened_at, e.exception_id",
            {"ids": [str(i) for i in exception_ids]},
        )

    def find_exceptions(self, reference: str) -> pd.DataFrame:
        """Exceptions a person may mean by ``reference``: an id prefix (any case), the order
        number the buyer sees (``SL-100003``) or the portal purchase id; oldest first."""
        return self.query(
            f"""
            {self._QUEUE_SELECT}
            WHERE starts_with(upper(e.exception_id), upper($ref))
               OR upper(t.visible_id) = upper($ref)
               OR e.entity_key = $ref
            ORDER BY e.opened_at, e.exception_id
            """,
            {"ref": reference},
        )

    def exception_history(self, exception_id: str) -> pd.DataFrame:
        """Every audit event about one exception (opened, recurred, approved, retried, ...),
        oldest first: seq, occurred_at, run_id, action, detail."""
        return self.query(
            "SELECT seq, occurred_at, run_id, action, detail FROM audit_events "
            "WHERE entity = 'exception' AND entity_key = $id ORDER BY seq",
            {"id": exception_id},
        )

    def account_had_price_lists(self, account_code: str) -> bool:
        """Whether the pipeline ever gave ``account_code`` price lists in the portal."""
        found = self.query(
            "SELECT count(*) AS n FROM customer_price_list_history WHERE account_code = $account",
            {"account": account_code},
        )
        return bool(found["n"].iloc[0])

    def exception_queue_page(
        self,
        *,
        statuses: Sequence[str] = (),
        category: str | None = None,
        reason_code: str | None = None,
        account_code: str | None = None,
        older_than_hours: float | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> pd.DataFrame:
        """One page of :meth:`exception_queue` (same columns, order and filters, except that
        the account matches whatever its case), ``limit`` rows from ``offset``: the console's
        paged queue. The page is cut before the order numbers are joined, so a screen costs
        the same in a queue of 100,000."""
        return self.query(
            """
            WITH page AS (
                SELECT * FROM exceptions AS e
                WHERE (len($statuses) = 0 OR list_contains($statuses, e.status))
                  AND ($category IS NULL OR upper(e.category) = upper($category))
                  AND ($reason IS NULL OR upper(e.reason_code) = upper($reason))
                  AND ($account IS NULL OR upper(e.account_code) = upper($account))
                  AND ($hours IS NULL
                       OR epoch(current_timestamp) - epoch(e.opened_at) >= $hours * 3600)
                ORDER BY e.opened_at, e.exception_id
                LIMIT $limit OFFSET $offset
            )
            SELECT e.*, t.visible_id AS order_number,
                   round((epoch(current_timestamp) - epoch(e.opened_at)) / 3600.0, 1)
                       AS age_hours
            FROM page AS e
            LEFT JOIN order_tracking AS t
                   ON e.entity = 'order' AND t.portal_order_id = e.entity_key
            ORDER BY e.opened_at, e.exception_id
            """,
            {
                "statuses": list(statuses),
                "category": category,
                "reason": reason_code,
                "account": account_code,
                "hours": older_than_hours,
                "limit": max(int(limit), 0),
                "offset": max(int(offset), 0),
            },
        )

    def exception_status_counts(
        self,
        *,
        category: str | None = None,
        reason_code: str | None = None,
        account_code: str | None = None,
        older_than_hours: float | None = None,
    ) -> dict[str, int]:
        """How many exceptions of each status match the filters of
        :meth:`exception_queue_page` (the console's tab counts); every status listed."""
        counts = self.query(
            """
            SELECT status, count(*) AS n FROM exceptions AS e
            WHERE ($category IS NULL OR upper(e.category) = upper($category))
              AND ($reason IS NULL OR upper(e.reason_code) = upper($reason))
              AND ($account IS NULL OR upper(e.account_code) = upper($account))
              AND ($hours IS NULL
                   OR epoch(current_timestamp) - epoch(e.opened_at) >= $hours * 3600)
            GROUP BY status
            """,
            {
                "category": category,
                "reason": reason_code,
                "account": account_code,
                "hours": older_than_hours,
            },
        )
        found = dict(zip(counts["status"], counts["n"].astype(int), strict=True))
        return {status: int(found.get(status, 0)) for status in exception_queue.EXCEPTION_STATUSES}

    def latest_events(self, entity: str, *, per_key: bool = False) -> pd.DataFrame:
        """The newest audit event of ``entity`` (with ``per_key``, of each of its entity_keys,
        e.g. each sync's data type): seq, occurred_at, run_id, entity, entity_key, action,
        category, detail. The console's sync health reads when each flow last ran here."""
        return self.query(
            """
            WITH newest AS (
                SELECT max(seq) AS seq FROM audit_events
                WHERE entity = $entity
                GROUP BY CASE WHEN $per_key THEN entity_key END
            )
            SELECT a.seq, a.occurred_at, a.run_id, a.entity, a.entity_key, a.action,
                   a.category, a.detail
            FROM audit_events AS a JOIN newest USING (seq)
            WHERE a.entity = $entity
            ORDER BY a.entity_key
            """,
            {"entity": entity, "per_key": per_key},
        )

    def run_activity(self, run_ids: Sequence[str]) -> pd.DataFrame:
        """What these runs recorded, one row per kind of event: run_id, entity, action,
        category, events (how many), first_at, last_at (what a sync pushed, which exceptions
        it raised)."""
        return self.query(
            """
            SELECT run_id, entity, action, category, count(*) AS events,
                   min(occurred_at) AS first_at, max(occurred_at) AS last_at
            FROM audit_events
            WHERE list_contains($ids, run_id)
            GROUP BY ALL
            ORDER BY run_id, entity, action, category
            """,
            {"ids": [str(run_id) for run_id in run_ids]},
        )

    def order_numbers(self, portal_order_ids: Sequence[str]) -> pd.Series:
        """portal_order_id -> the order number the buyer sees (``SL-100003``), from order
        tracking, for the orders that have one (the console names reconciliation lines so)."""
        found = self.query(
            # A semi-join on the unnested ids: list_contains would test each tracked order
            # against the whole list (10,000 differences of a large month x every order).
            "SELECT portal_order_id, visible_id FROM order_tracking "
            "WHERE portal_order_id IN (SELECT unnest($ids)) AND visible_id IS NOT NULL",
            {"ids": [str(i) for i in portal_order_ids]},
        )
        return found.set_index("portal_order_id")["visible_id"].astype(object)

    def reconciliation_outcomes(self, month: str) -> pd.DataFrame:
        """outcome, lines, computed_at (when the last run filed them) of ``month``'s
        reconciliation lines: the close pack's outcome counts without reading every line."""
        return self.query(
            """
            SELECT outcome, count(*) AS lines, max(computed_at) AS computed_at
            FROM reconciliation_lines WHERE month = $month
            GROUP BY outcome ORDER BY outcome
            """,
            {"month": month},
        )

    def reconciliation_differences(self, month: str) -> pd.DataFrame:
        """``month``'s reconciliation lines that are not MATCHED (the contract's columns, money
        as DOUBLE), by portal order: what the close pack lists, without the matched million."""
        return self.query(
            """
            SELECT month, portal_order_id, erp_order_no, account_code, currency,
                   portal_gross::DOUBLE AS portal_gross, erp_gross::DOUBLE AS erp_gross,
                   difference::DOUBLE AS difference, outcome, reason, computed_at
            FROM reconciliation_lines
            WHERE month = $month AND outcome <> 'MATCHED'
            ORDER BY portal_order_id
            """,
            {"month": month},
        )
