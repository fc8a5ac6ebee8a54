"""Between pandas frames and database rows, for the ERP gateway.

Out of the database: raw driver values (money cast to double, PostgreSQL timestamps to text in
SQL) turned into the project's dtypes per column, vectorised: money float64, booleans bool,
timestamps tz-aware UTC. Into it: DBAPI-ready Python values, money as ``Decimal`` at 4 places.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, cast

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from b2b_pipeline.connectors.erp import schema

_FOUR_PLACES = Decimal("0.0001")


def decimal4(value: Any) -> Decimal | None:
    """Money for the ERP: ``Decimal`` at 4 places, from a float, int, str or Decimal."""
    if value is None or (not isinstance(value, (str, Decimal)) and pd.isna(value)):
        return None
    # str() of a float is its shortest round-trip text, so 0.1 + 0.2 becomes 0.3000.
    return Decimal(str(value)).quantize(_FOUR_PLACES, rounding=ROUND_HALF_UP)


def python_values(column: sa.Column[Any], values: pd.Series) -> list[Any]:
    """One frame column as DBAPI-ready Python values (numpy scalars are not adaptable)."""
    kind = column.type
    missing = values.isna().to_numpy()
    items: list[Any]
    if isinstance(kind, sa.Numeric):
        return [decimal4(v) for v in values.tolist()]
    if isinstance(kind, sa.Boolean):
        items = [bool(v) for v in values.tolist()]
    elif isinstance(kind, sa.Integer):
        items = [v if m else int(v) for v, m in zip(values.tolist(), missing, strict=True)]
    elif isinstance(kind, schema.UtcDateTime):
        stamps = pd.to_datetime(values, utc=True)
        items = [v if m else v.to_pydatetime() for v, m in zip(stamps, missing, strict=True)]
    else:
        items = [str(v) for v in values.tolist()]
    return [None if m else v for v, m in zip(items, missing, strict=True)]


def records(table: sa.Table, frame: pd.DataFrame) -> list[dict[str, Any]]:
    names = [c.name for c in table.columns if c.name in frame.columns]
    columns = [python_values(table.c[name], frame[name]) for name in names]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def typed_frame(table: sa.Table, rows: Sequence[tuple[Any, ...]], names: list[str]) -> pd.DataFrame:
    """Raw DBAPI rows -> a frame with the project's dtypes, converted per column, vectorised."""
    frame = pd.DataFrame.from_records(list(rows), columns=names)
    for name in names:
        kind = table.c[name].type
        values = frame[name]
        if isinstance(kind, sa.Numeric):
            frame[name] = values.astype("float64")
        elif isinstance(kind, sa.Boolean):
            frame[name] = values.astype(bool)
        elif isinstance(kind, sa.Integer):
            frame[name] = values.astype("Int64" if values.isna().any() else "int64")
        elif isinstance(kind, schema.UtcDateTime):
            # SQLite returns UTC text, PostgreSQL aware datetimes: both parse to UTC here.
            frame[name] = pd.to_datetime(values, utc=True, format="ISO8601")
        else:
            frame[name] = values.astype(object)
    return frame


def raw_columns(table: sa.Table, names: list[str], dialect: str) -> list[sa.ColumnElement[Any]]:
    """Select items that reach Python as plain driver values, converted later per column.

    Money is cast to double precision and (PostgreSQL) timestamps to ISO text in SQL: building
    a million ``Decimal`` or ``datetime`` objects only to turn them into numpy values costs
    seconds, where pandas parses the text in C. Nothing is converted per value in Python.
    """
    items: list[sa.ColumnElement[Any]] = []
    for name in names:
        column = table.c[name]
        if isinstance(column.type, sa.Numeric):
            raw = sa.type_coerce(sa.cast(column, sa.Double()), sa.types.NullType())
        elif isinstance(column.type, schema.UtcDateTime) and dialect == "postgresql":
            raw = sa.type_coerce(sa.cast(column, sa.Text()), sa.types.NullType())
        else:
            raw = sa.type_coerce(column, sa.types.NullType())
        items.append(raw.label(name))
    return items


def fetch_raw(conn: Connection, stmt: sa.Select[Any]) -> list[tuple[Any, ...]]:
    """Rows as the driver's tuples, skipping SQLAlchemy's per-row objects (large reads)."""
    result = conn.execute(stmt)
    try:
        # PEP 249 promises only a sequence of sequences; sqlite3 and psycopg give a list of
        # tuples, which is what the callers (and DataFrame.from_records) rely on.
        return cast("list[tuple[Any, ...]]", result.cursor.fetchall())
    finally:
        result.close()


def require_columns(frame: pd.DataFrame, required: list[str], what: str) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} frame is missing columns: {', '.join(missing)}")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def driver_connection(conn: Connection) -> Any:
    """The driver's own connection under ``conn``, for the paths SQLAlchemy has no fast form of
    (SQLite executemany and PRAGMA, PostgreSQL COPY)."""
    driver = conn.connection.driver_connection
    if driver is None:  # only once the pool has invalidated it: nothing left to run on
        raise sa.exc.InvalidRequestError("the ERP connection is no longer open")
    return driver
