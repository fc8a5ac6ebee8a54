"""What the pipeline remembers between runs, kept in the audit DuckDB file.

- ``order_cursor``: the durable order cursor (purchase ``updated_at`` and id of the newest purchase
  fully handled). It advances only after the orders behind it are posted or queued.
- ``order_tracking``: one row per portal purchase seen, with the version (``updated_at``) last
  handled and its outcome; this is what the conservation check and a re-seen purchase rely on.
- ``portal_price_snapshot``: the prices the portal holds as far as the pipeline knows (what it last
  pushed or read back); the intra-day price sync diffs against it.
- ``portal_customers``: the portal's customers as the pipeline last read or wrote them (the
  fields the order rules read, as JSON), so that a run with one new order does not re-read
  5,000 customers (``flows/order_intake.py`` says when a row is trusted).
- ``inventory_current`` and ``inventory_history``: the last stock level pushed per SKU and location,
  and every change with its time, from which any past snapshot can be rebuilt (keeping only changes
  stores hours of 15-minute snapshots in the space of one).

Writes are bulk (a registered DataFrame and one statement), never a row at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import duckdb
import pandas as pd

from b2b_pipeline.connectors.audit.connection import (
    DEFAULT_LOCK_WAIT_SECONDS,
    run_with_lock_retry,
)

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS order_cursor (
    name VARCHAR PRIMARY KEY,
    updated_at TIMESTAMPTZ,
    purchase_id VARCHAR,
    advanced_at TIMESTAMPTZ,
    run_id VARCHAR
);
CREATE TABLE IF NOT EXISTS order_tracking (
    portal_order_id VARCHAR PRIMARY KEY,
    visible_id VARCHAR,
    account_code VARCHAR,
    purchase_type VARCHAR,      -- order, order_unconfirmed, awaiting_approval, quote, cart
    cancelled BOOLEAN DEFAULT FALSE,
    portal_updated_at TIMESTAMPTZ,
    outcome VARCHAR,            -- filtered | posted | exception | ignored (by a person)
    erp_order_no VARCHAR,
    reason_code VARCHAR,
    internal_written BOOLEAN DEFAULT FALSE,
    first_seen_at TIMESTAMPTZ,
    last_seen_at TIMESTAMPTZ,
    last_run_id VARCHAR
);
CREATE TABLE IF NOT EXISTS portal_price_snapshot (
    price_list_slug VARCHAR,
    sku VARCHAR,
    quantity INTEGER,  -- the break's minimum quantity, as the portal names it
    price DOUBLE
);
CREATE TABLE IF NOT EXISTS portal_customers (
    id VARCHAR PRIMARY KEY,     -- the customer's SparkLayer id
    accounting_id VARCHAR,      -- the ERP account code it carried when seen
    document VARCHAR,           -- the fields the order rules read, as JSON
    seen_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS inventory_current (
    sku VARCHAR,
    stock_location_external_id VARCHAR,
    stock_level BIGINT,
    pushed_at TIMESTAMPTZ,
    PRIMARY KEY (sku, stock_location_external_id)
);
CREATE TABLE IF NOT EXISTS inventory_history (
    sku VARCHAR,
    stock_location_external_id VARCHAR,
    stock_level BIGINT,
    changed_at TIMESTAMPTZ,
    run_id VARCHAR
);
"""
# Files written before SparkLayer contract v2 tracked a purchase ``status``; v2 has a ``type``.
MIGRATIONS = """
ALTER TABLE order_tracking ADD COLUMN IF NOT EXISTS purchase_type VARCHAR;
ALTER TABLE order_tracking ADD COLUMN IF NOT EXISTS cancelled BOOLEAN DEFAULT FALSE;
"""

ORDER_CURSOR = "portal_purchases"


@dataclass(frozen=True)
class OrderCursor:
    updated_at: datetime | None
    purchase_id: str | None


class SyncState:
    """The sync state in the audit file at ``path``.

    Like the audit store, it opens a short connection per operation: reads are read-only (a
    reader never waits for the writer's lock longer than one write transaction lasts, and never
    runs DDL), and the schema is made sure of once, on first use (``ensure_audit_schema``: a
    read-only look at the schema stamp unless the file is new or from an older release).
    """

    def __init__(
        self, path: Path | str, *, lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS
    ) -> None:
        self.path = Path(path)
        self.lock_wait_seconds = lock_wait_seconds
        self._schema_ready = False

    def __repr__(self) -> str:
        return f"SyncState({str(self.path)!r})"

    def _run(self, work: Callable[[duckdb.DuckDBPyConnection], T], *, read_only: bool) -> T:
        """One transaction on the audit file, sharing the audit store's in-process lock and its
        bounded wait for other processes (DuckDB has one writing process at a time)."""
        if not self._schema_ready:
            self.ensure_schema()
        return run_with_lock_retry(
            self.path, work, read_only=read_only, max_wait_seconds=self.lock_wait_seconds
        )

    def _query(self, sql: str, params: list | None = None, **frames: pd.DataFrame) -> pd.DataFrame:
        def work(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
            for name, frame in frames.items():
                con.register(name, frame)
            return con.execute(sql, params).df()

        return self._run(work, read_only=True)

    def _execute(self, *statements: str, params: list | None = None, **frames: pd.DataFrame):
        def work(con: duckdb.DuckDBPyConnection) -> None:
            for name, frame in frames.items():
                con.register(name, frame)
            for statement in statements:
                con.execute(statement, params)

        self._run(work, read_only=False)

    def ensure_schema(self) -> None:
        """The sync-state tables live in the audit file and are created with its schema."""
        from b2b_pipeline.connectors.audit.setup import ensure_audit_schema

        ensure_audit_schema(self.path, lock_wait_seconds=self.lock_wait_seconds)
        self._schema_ready = True

    # Orders ------------------------------------------------------------------------------
    def order_cursor(self) -> OrderCursor:
        rows = self._query(
            "SELECT updated_at, purchase_id FROM order_cursor WHERE name = ?", [ORDER_CURSOR]
        )
        if rows.empty:
            return OrderCursor(None, None)
        return OrderCursor(rows["updated_at"].iloc[0].to_pydatetime(), rows["purchase_id"].iloc[0])

    def advance_order_cursor(self, updated_at: datetime, purchase_id: str, run_id: str) -> None:
        """Move the cursor forward (never back) to a fully handled purchase."""
        self._execute(
            """
            INSERT INTO order_cursor VALUES (?, ?, ?, ?, ?)
            ON CONFLICT (name) DO UPDATE SET
                updated_at = excluded.updated_at, purchase_id = excluded.purchase_id,
                advanced_at = excluded.advanced_at, run_id = excluded.run_id
            WHERE (excluded.updated_at, excluded.purchase_id)
                  > (order_cursor.updated_at, order_cursor.purchase_id)
            """,
            params=[ORDER_CURSOR, updated_at, purchase_id, datetime.now(UTC), run_id],
        )

    def tracked_versions(self, ids: list[str]) -> pd.DataFrame:
        """portal_order_id, portal_updated_at, outcome, erp_order_no, internal_written."""
        return self._query(
            """SELECT t.portal_order_id, t.portal_updated_at, t.outcome, t.erp_order_no,
                      t.internal_written, t.reason_code
               FROM order_tracking t JOIN wanted USING (portal_order_id)""",
            wanted=pd.DataFrame({"portal_order_id": pd.Series(ids, dtype="string")}),
        )

    def track_orders(self, rows: pd.DataFrame, run_id: str) -> None:
        """Upsert tracking rows: portal_order_id, visible_id, account_code, purchase_type,
        cancelled, portal_updated_at, outcome, erp_order_no, reason_code."""
        if rows.empty:
            return
        self._execute(
            """
            INSERT INTO order_tracking (portal_order_id, visible_id, account_code, purchase_type,
                cancelled, portal_updated_at, outcome, erp_order_no, reason_code,
                internal_written, first_seen_at, last_seen_at, last_run_id)
            SELECT portal_order_id, visible_id, account_code, purchase_type, cancelled,
                   portal_updated_at, outcome, erp_order_no, reason_code, FALSE, now, now, run_id
            FROM incoming
            ON CONFLICT (portal_order_id) DO UPDATE SET
                visible_id = excluded.visible_id,
                account_code = excluded.account_code,
                purchase_type = excluded.purchase_type,
                cancelled = excluded.cancelled,
                portal_updated_at = excluded.portal_updated_at,
                outcome = excluded.outcome,
                erp_order_no = coalesce(excluded.erp_order_no, order_tracking.erp_order_no),
                reason_code = excluded.reason_code,
                last_seen_at = excluded.last_seen_at,
                last_run_id = excluded.last_run_id
            """,
            incoming=rows.assign(run_id=run_id, now=datetime.now(UTC)),
        )

    def mark_internal_written(self, written: pd.DataFrame) -> None:
        """written: portal_order_id, portal_updated_at (the version our write-back produced)."""
        if written.empty:
            return
        self._execute(
            """UPDATE order_tracking t SET internal_written = TRUE,
                   portal_updated_at = greatest(t.portal_updated_at, w.portal_updated_at)
               FROM written w WHERE t.portal_order_id = w.portal_order_id""",
            written=written,
        )

    def orders_awaiting_write_back(self, limit: int = 5000) -> pd.DataFrame:
        return self._query(
            """SELECT portal_order_id, visible_id, erp_order_no FROM order_tracking
               WHERE outcome = 'posted' AND NOT internal_written
                 AND erp_order_no IS NOT NULL ORDER BY first_seen_at
               LIMIT ?""",
            [limit],
        )

    def order_tracking(self) -> pd.DataFrame:
        return self._query("SELECT * FROM order_tracking")

    # Prices ------------------------------------------------------------------------------
    def price_snapshot(self) -> pd.DataFrame:
        """price_list_slug, sku, quantity, price: what the portal holds as far as we know."""
        return self._query("SELECT * FROM portal_price_snapshot")

    def replace_price_snapshot(self, breaks: pd.DataFrame) -> None:
        """Replace the snapshot with the portal's pricing after a sync (one bulk statement):
        price_list_slug, sku, quantity, price."""
        self._execute(
            "DELETE FROM portal_price_snapshot",
            "INSERT INTO portal_price_snapshot SELECT price_list_slug, sku, quantity, price "
            "FROM breaks",
            breaks=breaks[["price_list_slug", "sku", "quantity", "price"]],
        )

    def filled_price_lists(self) -> set[str]:
        rows = self._query("SELECT DISTINCT price_list_slug FROM portal_price_snapshot")
        return set(rows["price_list_slug"])

    # Portal customers --------------------------------------------------------------------
    def remember_portal_customers(self, customers: pd.DataFrame, *, complete: bool) -> None:
        """Keep these portal customers (``id``, ``accounting_id``, ``document`` as JSON text),
        seen now. ``complete``: they are every customer the portal has (a full read), so any
        other row is dropped; otherwise they replace their own rows only."""
        rows = pd.DataFrame(
            {
                "id": customers["id"].astype("string"),
                "accounting_id": customers["accounting_id"].astype("string"),
                "document": customers["document"].astype("string"),
            }
        ).dropna(subset=["id"])
        rows = rows.drop_duplicates("id", keep="last").assign(seen_at=datetime.now(UTC))
        statements = (
            ["DELETE FROM portal_customers"]
            if complete
            else ["DELETE FROM portal_customers WHERE id IN (SELECT id FROM seen)"]
        )
        self._execute(
            *statements,
            "INSERT INTO portal_customers SELECT id, accounting_id, document, seen_at FROM seen",
            seen=rows,
        )

    def portal_customers_seen_since(self, ids: list[str], since: datetime) -> pd.DataFrame:
        """id, accounting_id, document, seen_at of these customers, seen at or after ``since``."""
        return self._query(
            """SELECT c.id, c.accounting_id, c.document, c.seen_at
               FROM portal_customers c JOIN wanted USING (id) WHERE c.seen_at >= ?""",
            [since],
            wanted=pd.DataFrame({"id": pd.Series(ids, dtype="string")}),
        )

    # Inventory ---------------------------------------------------------------------------
    def inventory_current(self) -> pd.DataFrame:
        return self._query(
            "SELECT sku, stock_location_external_id, stock_level FROM inventory_current"
        )

    def record_stock_pushed(self, pushed: pd.DataFrame, run_id: str) -> None:
        """pushed: sku, stock_location_external_id, stock_level (rows the portal accepted)."""
        if pushed.empty:
            return
        frame = pushed[["sku", "stock_location_external_id", "stock_level"]].assign(
            changed_at=datetime.now(UTC), run_id=run_id
        )
        self._execute(
            """INSERT INTO inventory_current
               SELECT sku, stock_location_external_id, stock_level, changed_at FROM pushed
               ON CONFLICT (sku, stock_location_external_id) DO UPDATE SET
                 stock_level = excluded.stock_level, pushed_at = excluded.pushed_at""",
            "INSERT INTO inventory_history SELECT sku, stock_location_external_id, "
            "stock_level, changed_at, run_id FROM pushed",
            pushed=frame,
        )

    def last_inventory_push(self) -> datetime | None:
        rows = self._query("SELECT max(pushed_at) AS at FROM inventory_current")
        value = rows["at"].iloc[0]
        return None if pd.isna(value) else value.to_pydatetime()
