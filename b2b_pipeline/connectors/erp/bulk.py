"""Bulk loads into the ERP: a million rows in seconds (the demo seed and benchmarks).

SQLite: the driver's ``executemany`` on values prepared column by column (the same text
SQLAlchemy writes for timestamps, so change detection compares like with like). PostgreSQL:
``COPY ... FROM STDIN`` through psycopg. Any other database: SQLAlchemy's bulk insert.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from b2b_pipeline.connectors.erp import schema
from b2b_pipeline.connectors.erp.frames import chunks, driver_connection, records


def bulk_insert(conn: Connection, table: sa.Table, frame: pd.DataFrame) -> None:
    """Insert a frame's rows by the fastest path the database offers, in ``conn``'s transaction."""
    if frame.empty:
        return
    names = [c.name for c in table.columns if c.name in frame.columns]
    dialect = conn.dialect.name
    if dialect == "sqlite":
        _executemany_into_sqlite(conn, table, frame[names])
    elif dialect == "postgresql":
        _copy_into_postgres(conn, table, frame[names])
    else:
        rows = records(table, frame[names])
        for chunk in chunks(rows, 10_000):
            conn.execute(sa.insert(table), list(chunk))


def references_itself(table: sa.Table) -> bool:
    """Whether rows of ``table`` point at other rows of it (their parents must come first)."""
    return any(fk.column.table is table for fk in table.foreign_keys)


def _executemany_into_sqlite(conn: Connection, table: sa.Table, frame: pd.DataFrame) -> None:
    columns = [_sqlite_values(table.c[name], frame[name]) for name in frame.columns]
    preparer = conn.dialect.identifier_preparer
    sql = (
        f"INSERT INTO {preparer.format_table(table)} "
        f"({', '.join(preparer.quote(n) for n in frame.columns)}) "
        f"VALUES ({', '.join('?' for _ in frame.columns)})"
    )
    cursor = driver_connection(conn).cursor()
    try:
        cursor.executemany(sql, zip(*columns, strict=True))
    finally:
        cursor.close()


def _sqlite_values(column: sa.Column[Any], values: pd.Series) -> list[Any]:
    """A column as SQLite stores it, vectorised (same text as SQLAlchemy's own binds)."""
    kind = column.type
    if isinstance(kind, schema.UtcDateTime):
        return _timestamp_text(values, "%Y-%m-%d %H:%M:%S.%f").tolist()
    if isinstance(kind, sa.Numeric):
        rounded = values.astype("float64").round(4)
        return rounded.astype(object).where(values.notna(), None).tolist()
    if isinstance(kind, sa.Boolean):
        return values.astype(bool).astype(int).tolist()
    return values.astype(object).where(values.notna(), None).tolist()


def _timestamp_text(values: pd.Series, layout: str) -> np.ndarray:
    """UTC timestamps as text, formatting each distinct value once (strftime is per value)."""
    codes, distinct = pd.factorize(pd.to_datetime(values, utc=True))
    text = pd.Series(distinct).dt.tz_convert(None).dt.strftime(layout).to_numpy(dtype=object)
    # None (SQL NULL) where the timestamp is missing; filled by mask rather than np.where, whose
    # stubs do not take None as an array-like.
    out = np.full(len(codes), None, dtype=object)
    present = codes >= 0
    out[present] = text[codes[present]]
    return out


def _copy_into_postgres(conn: Connection, table: sa.Table, frame: pd.DataFrame) -> None:
    """Bulk-load with COPY ... FROM STDIN, the fastest way into PostgreSQL.

    Rows go through psycopg's ``write_row`` (its C encoder), which measured faster than
    rendering CSV with pandas first.
    """
    columns: list[list[Any]] = []
    for name in frame.columns:
        kind = table.c[name].type
        values = frame[name]
        if isinstance(kind, schema.UtcDateTime):
            columns.append(_timestamp_text(values, "%Y-%m-%d %H:%M:%S.%f+00:00").tolist())
        elif isinstance(kind, sa.Numeric):
            rounded = values.astype("float64").round(4)
            columns.append(rounded.astype(object).where(values.notna(), None).tolist())
        elif isinstance(kind, sa.Boolean):
            columns.append(values.astype(bool).tolist())
        else:
            columns.append(values.astype(object).where(values.notna(), None).tolist())
    preparer = conn.dialect.identifier_preparer
    names = ", ".join(preparer.quote(n) for n in frame.columns)
    sql = f"COPY {preparer.format_table(table)} ({names}) FROM STDIN"
    cursor = driver_connection(conn).cursor()
    try:
        with cursor.copy(sql) as copy:
            for row in zip(*columns, strict=True):
                copy.write_row(row)
    finally:
        cursor.close()
