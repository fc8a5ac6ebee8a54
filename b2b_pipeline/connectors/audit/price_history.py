"""Price history: every price pushed to the portal, with the period it was valid for.

Answers "what price did account X see for SKU Y on date D": the breaks of the lists the account
had on D, each with the list it came from and the price after the account's discount. A push
replaces a SKU's breaks on the portal (PATCH pricing semantics), so recording a push closes every
current break of each pushed SKU that the push did not send again unchanged, and opens the new
ones; a SKU sent with no price (``price`` NULL) was removed. One UPDATE and one INSERT each time,
whatever the size of the push.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import duckdb
import pandas as pd
import pyarrow as pa

_PRICE_COLUMNS = ("price_list_slug", "sku", "min_quantity", "price", "currency")


def _with_push_metadata(
    frame: pd.DataFrame, now: datetime, run_id: str | None, keys: list[str]
) -> pd.DataFrame:
    staged = frame.copy()
    if "pushed_at" not in staged.columns:
        staged["pushed_at"] = now
    staged["pushed_at"] = pd.to_datetime(staged["pushed_at"], utc=True).fillna(pd.Timestamp(now))
    if "run_id" not in staged.columns:
        staged["run_id"] = run_id
    # Pushed twice in one frame: the latest push of a key wins.
    return staged.sort_values("pushed_at", kind="stable").drop_duplicates(keys, keep="last")


def record_prices_in(
    connection: duckdb.DuckDBPyConnection,
    prices: pd.DataFrame,
    *,
    run_id: str | None,
    now: datetime,
) -> None:
    """Record the breaks pushed in one sync (``slug`` or ``price_list_slug``, ``sku``,
    ``min_quantity``, ``price`` (NULL = removed), ``currency``, optional ``pushed_at``)."""
    if prices.empty:
        return
    frame = prices.rename(columns={"slug": "price_list_slug"})
    missing = [c for c in _PRICE_COLUMNS if c not in frame.columns and c != "currency"]
    if missing:
        raise ValueError(f"price rows need the columns {missing}")
    if "currency" not in frame.columns:
        frame = frame.assign(currency=None)
    connection.register(
        "staged_prices",
        _with_push_metadata(frame, now, run_id, ["price_list_slug", "sku", "min_quantity"]),
    )
    try:
        connection.execute(
            """
            CREATE TEMP TABLE pushed_prices AS
            SELECT price_list_slug::VARCHAR AS price_list_slug, sku::VARCHAR AS sku,
                   min_quantity::DECIMAL(18, 4) AS min_quantity, price::DECIMAL(18, 4) AS price,
                   currency::VARCHAR AS currency, pushed_at::TIMESTAMPTZ AS pushed_at,
                   run_id::VARCHAR AS run_id
            FROM staged_prices
            """
        )
    finally:
        connection.unregister("staged_prices")
    connection.execute(
        """
        UPDATE price_history AS h
        SET valid_to = greatest(t.pushed_at, h.valid_from)
        FROM (SELECT price_list_slug, sku, max(pushed_at) AS pushed_at
              FROM pushed_prices GROUP BY ALL) AS t
        WHERE h.valid_to IS NULL AND h.price_list_slug = t.price_list_slug AND h.sku = t.sku
          AND NOT EXISTS (
              SELECT 1 FROM pushed_prices AS p
              WHERE p.price_list_slug = h.price_list_slug AND p.sku = h.sku
                AND p.min_quantity = h.min_quantity AND p.price = h.price
                AND p.currency IS NOT DISTINCT FROM h.currency)
        """
    )
    connection.execute(
        """
        INSERT INTO price_history (price_list_slug, sku, min_quantity, price, currency,
                                   valid_from, valid_to, run_id)
        SELECT p.price_list_slug, p.sku, p.min_quantity, p.price, p.currency, p.pushed_at,
               NULL, p.run_id
        FROM pushed_prices AS p
        WHERE p.price IS NOT NULL AND p.min_quantity IS NOT NULL
          AND NOT EXISTS (
              SELECT 1 FROM price_history AS h
              WHERE h.valid_to IS NULL AND h.price_list_slug = p.price_list_slug
                AND h.sku = p.sku AND h.min_quantity = p.min_quantity)
        """
    )
    connection.execute("DROP TABLE pushed_prices")


def _price_lists_table(frame: pd.DataFrame) -> pa.Table:
    """The frame as Arrow, ``price_lists`` as a list of slugs (it may arrive as JSON text)."""
    lists = frame["price_lists"]
    if pd.api.types.infer_dtype(lists, skipna=True) == "string":
        table = pa.Table.from_pandas(frame.drop(columns=["price_lists"]), preserve_index=False)
        return table.append_column("price_lists_json", pa.array(lists.tolist(), pa.string()))
    return pa.Table.from_pandas(frame, preserve_index=False)


def record_customer_lists_in(
    connection: duckdb.DuckDBPyConnection,
    assignments: pd.DataFrame,
    *,
    run_id: str | None,
    now: datetime,
) -> None:
    """Record which lists and discount each account had in the portal from now on
    (``account_code``, ``price_lists`` (list of slugs or JSON text), ``discount_percentage``,
    optional ``pushed_at``)."""
    if assignments.empty:
        return
    missing = [c for c in ("account_code", "price_lists") if c not in assignments.columns]
    if missing:
        raise ValueError(f"customer list rows need the columns {missing}")
    frame = assignments[
        [
            c
            for c in assignments.columns
            if c in ("account_code", "price_lists", "discount_percentage", "pushed_at", "run_id")
        ]
    ]
    if "discount_percentage" not in frame.columns:
        frame = frame.assign(discount_percentage=0.0)
    staged = _price_lists_table(_with_push_metadata(frame, now, run_id, ["account_code"]))
    lists_sql = (
        "from_json(price_lists_json, '[\"VARCHAR\"]')"
        if "price_lists_json" in staged.column_names
        else "price_lists::VARCHAR[]"
    )
    connection.register("staged_customer_lists", staged)
    try:
        connection.execute(
            f"""
            CREATE TEMP TABLE pushed_customer_lists AS
            SELECT account_code::VARCHAR AS account_code,
                   list_sort(coalesce({lists_sql}, []::VARCHAR[])) AS price_lists,
                   coalesce(discount_percentage, 0)::DECIMAL(9, 4) AS discount_percentage,
                   pushed_at::TIMESTAMPTZ AS pushed_at, run_id::VARCHAR AS run_id
            FROM staged_customer_lists
            """
        )
    finally:
        connection.unregister("staged_customer_lists")
    connection.execute(
        """
        UPDATE customer_price_list_history AS h
        SET valid_to = greatest(p.pushed_at, h.valid_from)
        FROM pushed_customer_lists AS p
        WHERE h.valid_to IS NULL AND h.account_code = p.account_code
          AND (h.price_lists <> p.price_lists OR h.discount_percentage <> p.discount_percentage)
        """
    )
    connection.execute(
        """
        INSERT INTO customer_price_list_history (account_code, price_lists, discount_percentage,
                                                 valid_from, valid_to, run_id)
        SELECT p.account_code, p.price_lists, p.discount_percentage, p.pushed_at, NULL, p.run_id
        FROM pushed_customer_lists AS p
        WHERE NOT EXISTS (SELECT 1 FROM customer_price_list_history AS h
                          WHERE h.valid_to IS NULL AND h.account_code = p.account_code)
        """
    )
    connection.execute("DROP TABLE pushed_customer_lists")


def _window(on: date | datetime) -> tuple[datetime, datetime]:
    """A calendar date means the whole UTC day; a datetime means that instant."""
    if isinstance(on, datetime):
        instant = on if on.tzinfo else on.replace(tzinfo=UTC)
        return instant, instant + timedelta(microseconds=1)
    start = datetime.combine(on, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def price_on(
    connection: duckdb.DuckDBPyConnection, account_code: str, sku: str, on: date | datetime
) -> pd.DataFrame:
    """The breaks account ``account_code`` saw for ``sku`` on ``on``, one row per break and
    period: a price that changed during the day shows both, each with the hours it held.

    Columns: account_code, sku, price_list_slug, min_quantity, list_price,
    discount_percentage, price (after discount, rounded half-up to 2 dp), currency,
    valid_from, valid_to (NULL = still current).
    """
    start, end = _window(on)
    return connection.execute(
        """
        WITH lists AS (
            SELECT account_code, unnest(price_lists) AS price_list_slug, discount_percentage,
                   valid_from, coalesce(valid_to, 'infinity'::TIMESTAMPTZ) AS valid_to
            FROM customer_price_list_history
            WHERE account_code = $account_code
              AND valid_from < $end AND (valid_to IS NULL OR valid_to > $start)
        ),
        breaks AS (
            SELECT l.account_code, p.sku, p.price_list_slug, p.min_quantity,
                   p.price AS list_price, l.discount_percentage,
                   -- DECIMAL throughout (x 0.01 rather than / 100, which would give a DOUBLE),
                   -- so round() is exactly half-up for these positive amounts.
                   round(p.price * (100 - l.discount_percentage) * 0.01, 2) AS price,
                   p.currency,
                   greatest(p.valid_from, l.valid_from) AS valid_from,
                   least(coalesce(p.valid_to, 'infinity'::TIMESTAMPTZ), l.valid_to) AS valid_to
            FROM lists AS l JOIN price_history AS p USING (price_list_slug)
            WHERE p.sku = $sku AND p.valid_from < $end
              AND (p.valid_to IS NULL OR p.valid_to > $start)
        )
        SELECT account_code, sku, price_list_slug, min_quantity, list_price,
               discount_percentage, price, currency, valid_from,
               CASE WHEN isinf(valid_to) THEN NULL ELSE valid_to END AS valid_to
        FROM breaks
        WHERE valid_from < valid_to AND valid_from < $end AND valid_to > $start
        ORDER BY valid_from, min_quantity, price, price_list_slug
        """,
        {"account_code": account_code, "sku": sku, "start": start, "end": end},
    ).df()
