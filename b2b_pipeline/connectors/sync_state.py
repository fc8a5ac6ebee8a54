"""What the pipeline remembers between runs, kept in the audit DuckDB file.

- ``order_cursor``: the durable order cursor (purchase ``updated_at`` and id of the newest purchase
  fully handled). It advances only after the orders behind it are posted or queued.
- ``order_tracking``: one row per portal purchase seen, with the version (``updated_at``) last
  handled and its outcome; this is what the conservation check and a re-seen purchase rely on.
- ``portal_price_snapshot``: the prices the portal holds as far as the pipeline knows (what it last
  pushed or read back); the intra-day price sync diffs against it.
- ``inventory_current`` and ``inventory_history``: the last stock level pushed per SKU and location,
  and every change with its time, from which any past snapshot can be rebuilt (keeping only changes
  stores hours of 15-minute snapshots in the space of one).

Writes are bulk (a registered DataFrame and one statement), never a row at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd
from tenacity import (
    retry,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)

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
    status VARCHAR,
    portal_updated_at TIMESTAMPTZ,
    outcome VARCHAR,            -- filtered | posted | exception
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
    min_quantity INTEGER,
    price DOUBLE
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

ORDER_CURSOR = "portal_purchases"


def _is_lock_conflict(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, duckdb.Error) and ("lock" in text.lower() or "Conflict" in text)


# DuckDB allows one writing process; Dagster runs that overlap wait here (bounded) rather than fail.
_with_lock_retry = retry(
    retry=retry_if_exception(_is_lock_conflict),
    wait=wait_exponential_jitter(initial=0.05, max=2.0),
    stop=stop_after_delay(120),
    reraise=True,
)


@dataclass(frozen=True)
class OrderCursor:
    updated_at: datetime | None
    purchase_id: str | None


class SyncState:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @contextmanager
    def _connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        con = _with_lock_retry(duckdb.connect)(str(self.path), read_only=read_only)
        try:
            con.execute("SET TimeZone = 'UTC'")
            yield con
        finally:
            con.close()

    def ensure_schema(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.execute(SCHEMA)

    # Orders ------------------------------------------------------------------------------
    def order_cursor(self) -> OrderCursor:
        with self._connect() as con:
            row = con.execute(
                "SELECT updated_at, purchase_id FROM order_cursor WHERE name = ?", [ORDER_CURSOR]
            ).fetchone()
        return OrderCursor(*row) if row else OrderCursor(None, None)

    def advance_order_cursor(self, updated_at: datetime, purchase_id: str, run_id: str) -> None:
        """Move the cursor forward (never back) to a fully handled purchase."""
        with self._connect() as con:
            con.execute(
                """
                INSERT INTO order_cursor VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (name) DO UPDATE SET
                    updated_at = excluded.updated_at, purchase_id = excluded.purchase_id,
                    advanced_at = excluded.advanced_at, run_id = excluded.run_id
                WHERE (excluded.updated_at, excluded.purchase_id)
                      > (order_cursor.updated_at, order_cursor.purchase_id)
                """,
                [ORDER_CURSOR, updated_at, purchase_id, datetime.now(UTC), run_id],
            )

    def tracked_versions(self, ids: list[str]) -> pd.DataFrame:
        """portal_order_id, portal_updated_at, outcome, erp_order_no, internal_written."""
        frame = pd.DataFrame({"portal_order_id": pd.Series(ids, dtype="string")})
        with self._connect() as con:
            con.register("wanted", frame)
            return con.execute(
                """SELECT t.portal_order_id, t.portal_updated_at, t.outcome, t.erp_order_no,
                          t.internal_written, t.reason_code
                   FROM order_tracking t JOIN wanted USING (portal_order_id)"""
            ).df()

    def track_orders(self, rows: pd.DataFrame, run_id: str) -> None:
        """Upsert tracking rows: portal_order_id, visible_id, account_code, status,
        portal_updated_at, outcome, erp_order_no, reason_code."""
        if rows.empty:
            return
        now = datetime.now(UTC)
        frame = rows.assign(run_id=run_id, now=now)
        with self._connect() as con:
            con.register("incoming", frame)
            con.execute(
                """
                INSERT INTO order_tracking
                SELECT portal_order_id, visible_id, account_code, status, portal_updated_at,
                       outcome, erp_order_no, reason_code, FALSE, now, now, run_id
                FROM incoming
                ON CONFLICT (portal_order_id) DO UPDATE SET
                    visible_id = excluded.visible_id,
                    account_code = excluded.account_code,
                    status = excluded.status,
                    portal_updated_at = excluded.portal_updated_at,
                    outcome = excluded.outcome,
                    erp_order_no = coalesce(excluded.erp_order_no, order_tracking.erp_order_no),
                    reason_code = excluded.reason_code,
                    last_seen_at = excluded.last_seen_at,
                    last_run_id = excluded.last_run_id
                """
            )

    def mark_internal_written(self, written: pd.DataFrame) -> None:
        """written: portal_order_id, portal_updated_at (the version our write-back produced)."""
        if written.empty:
            return
        with self._connect() as con:
            con.register("written", written)
            con.execute(
                """UPDATE order_tracking t SET internal_written = TRUE,
                       portal_updated_at = greatest(t.portal_updated_at, w.portal_updated_at)
                   FROM written w WHERE t.portal_order_id = w.portal_order_id"""
            )

    def orders_awaiting_write_back(self, limit: int = 5000) -> pd.DataFrame:
        with self._connect() as con:
            return con.execute(
                """SELECT portal_order_id, erp_order_no FROM order_tracking
                   WHERE outcome = 'posted' AND NOT internal_written ORDER BY first_seen_at
                   LIMIT ?""",
                [limit],
            ).df()

    def order_tracking(self) -> pd.DataFrame:
        with self._connect() as con:
            return con.execute("SELECT * FROM order_tracking").df()

    # Prices ------------------------------------------------------------------------------
    def price_snapshot(self, slugs: list[str] | None = None) -> pd.DataFrame:
        with self._connect() as con:
            if slugs is None:
                return con.execute("SELECT * FROM portal_price_snapshot").df()
            con.register("wanted", pd.DataFrame({"price_list_slug": slugs}))
            return con.execute(
                "SELECT s.* FROM portal_price_snapshot s JOIN wanted USING (price_list_slug)"
            ).df()

    def replace_price_snapshot(self, applied_skus: pd.DataFrame, breaks: pd.DataFrame) -> None:
        """Replace the snapshot rows of the (price_list_slug, sku) pairs the portal accepted.

        applied_skus: price_list_slug, sku. breaks: price_list_slug, sku, min_quantity, price
        (only for the applied pairs; a removed SKU has no breaks).
        """
        if applied_skus.empty:
            return
        with self._connect() as con:
            con.register("applied", applied_skus[["price_list_slug", "sku"]])
            con.register("breaks", breaks[["price_list_slug", "sku", "min_quantity", "price"]])
            con.execute("BEGIN")
            con.execute(
                """DELETE FROM portal_price_snapshot s USING applied a
                   WHERE s.price_list_slug = a.price_list_slug AND s.sku = a.sku"""
            )
            con.execute(
                "INSERT INTO portal_price_snapshot SELECT price_list_slug, sku, min_quantity, "
                "price FROM breaks"
            )
            con.execute("COMMIT")

    def reset_price_snapshot(self, breaks: pd.DataFrame) -> None:
        """Replace the whole snapshot with what was read back from the portal."""
        with self._connect() as con:
            con.register("breaks", breaks[["price_list_slug", "sku", "min_quantity", "price"]])
            con.execute("BEGIN")
            con.execute("DELETE FROM portal_price_snapshot")
            con.execute(
                "INSERT INTO portal_price_snapshot SELECT price_list_slug, sku, min_quantity, "
                "price FROM breaks"
            )
            con.execute("COMMIT")

    def filled_price_lists(self) -> set[str]:
        with self._connect() as con:
            rows = con.execute("SELECT DISTINCT price_list_slug FROM portal_price_snapshot")
            return {r[0] for r in rows.fetchall()}

    # Inventory ---------------------------------------------------------------------------
    def inventory_current(self) -> pd.DataFrame:
        with self._connect() as con:
            return con.execute(
                "SELECT sku, stock_location_external_id, stock_level FROM inventory_current"
            ).df()

    def record_stock_pushed(self, pushed: pd.DataFrame, run_id: str) -> None:
        """pushed: sku, stock_location_external_id, stock_level (rows the portal accepted)."""
        if pushed.empty:
            return
        now = datetime.now(UTC)
        frame = pushed[["sku", "stock_location_external_id", "stock_level"]].assign(
            at=now, run_id=run_id
        )
        with self._connect() as con:
            con.register("pushed", frame)
            con.execute("BEGIN")
            con.execute(
                """INSERT INTO inventory_current
                   SELECT sku, stock_location_external_id, stock_level, at FROM pushed
                   ON CONFLICT (sku, stock_location_external_id) DO UPDATE SET
                     stock_level = excluded.stock_level, pushed_at = excluded.pushed_at"""
            )
            con.execute(
                "INSERT INTO inventory_history SELECT sku, stock_location_external_id, "
                "stock_level, at, run_id FROM pushed"
            )
            con.execute("COMMIT")

    def last_inventory_push(self) -> datetime | None:
        with self._connect() as con:
            row = con.execute("SELECT max(pushed_at) FROM inventory_current").fetchone()
        return row[0] if row else None
