"""The ERP gateway: every read and write the pipeline makes against the ERP, over SQLAlchemy.

It speaks to the reference ERP's tables (:mod:`.schema`) on any SQLAlchemy URL: the embedded
SQLite file by default, PostgreSQL (psycopg 3) for a real deployment. Callers see pandas
DataFrames with the contract's column names and never a table name or a SQL dialect.

Decisions worth knowing:

- **Frames out**: money is float64 (vectorised comparison within the price tolerance, see
  docs/architecture.md), booleans are bool, timestamps are tz-aware UTC. **Money in** is written
  as ``Decimal`` quantized to 4 places, the precision of ``NUMERIC(14,4)``.
- **Posting is idempotent**: ``external_ref`` is UNIQUE, new orders are inserted with
  ``ON CONFLICT DO NOTHING`` in one transaction per batch, so a retry, a rerun or a concurrent run
  never creates a second sales order; already-posted refs come back with their existing number.
- **SQLite runs overlap** (Dagster runs in parallel processes): WAL lets readers run beside the
  writer, a busy timeout makes writers wait instead of failing, and writes take the write lock
  up front (``BEGIN IMMEDIATE``) so two writers queue instead of deadlocking on a lock upgrade.
- **Errors** are one line for a person: :class:`ErpUnreachableError` names the database with its
  password masked; the CLI prints it, never a traceback.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import URL, Connection

from b2b_pipeline.connectors.erp import schema
from b2b_pipeline.connectors.erp.bulk import bulk_insert, references_itself
from b2b_pipeline.connectors.erp.engine import (
    WRITE_OPTION,
    create_engine,
    is_missing_table,
    one_line_reason,
    parse_url,
    sqlite_file,
)
from b2b_pipeline.connectors.erp.errors import ErpError, ErpRejectedError, ErpUnreachableError
from b2b_pipeline.connectors.erp.frames import (
    chunks,
    driver_connection,
    fetch_raw,
    raw_columns,
    records,
    require_columns,
    typed_frame,
    utc_now,
)

# Keeps IN (...) lists under every database's bound-parameter limit.
_IN_CHUNK = 1_000

ORDER_COLUMNS = [
    "external_ref",
    "account_code",
    "po_number",
    "order_date",
    "status",
    "payment_method",
    "payment_terms",
    "tax_code",
    "currency",
    "net_total",
    "tax_total",
    "gross_total",
]
LINE_COLUMNS = [
    "external_ref",
    "line_no",
    "sku",
    "quantity",
    "unit_price",
    "line_net",
    "tax_amount",
]
POSTING_RESULT_COLUMNS = ["external_ref", "order_no", "already_posted"]


# --------------------------------------------------------------------------------------------
# The gateway
# --------------------------------------------------------------------------------------------


class ErpGateway:
    """Reads and writes of the reference ERP on any SQLAlchemy URL.

    ``postgresql://`` URLs use psycopg 3. Creating a gateway contacts nothing; the first call
    does, and raises :class:`ErpUnreachableError` if the database cannot be reached.
    """

    def __init__(self, url: str | URL) -> None:
        self._url = parse_url(url)
        # For messages and reprs: the password never leaves this object.
        self.display_url = self._url.render_as_string(hide_password=True)
        self._password = self._url.password if isinstance(self._url.password, str) else None
        self._engine = create_engine(self._url)

    def __repr__(self) -> str:
        return f"ErpGateway({self.display_url!r})"

    @property
    def dialect(self) -> str:
        """The database kind: ``"sqlite"``, ``"postgresql"``, ..."""
        return self._engine.dialect.name

    def dispose(self) -> None:
        """Close pooled connections (end of a run, end of a test)."""
        self._engine.dispose()

    # -- connections -------------------------------------------------------------------------

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Translate database failures into one-line :class:`ErpError` messages.

        Catches SQLAlchemy's wrapped errors and the driver's own (raised by the raw-cursor bulk
        paths: SQLite executemany, PostgreSQL COPY), classified by the PEP 249 hierarchy.
        """
        dbapi = self._engine.dialect.loaded_dbapi
        try:
            yield
        except (sa.exc.DBAPIError, dbapi.Error) as exc:
            orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
            reason = one_line_reason(exc, self._password)
            if isinstance(orig, dbapi.IntegrityError):
                raise ErpRejectedError(
                    f"The ERP at {self.display_url} refused {action}: {reason}. "
                    "Nothing from it was saved."
                ) from exc
            if orig is not None and is_missing_table(orig):
                raise ErpError(
                    f"The ERP at {self.display_url} has no reference tables yet ({action}): "
                    "run `b2b-pipeline erp init` first."
                ) from exc
            invalidated = isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated
            if invalidated or isinstance(orig, (dbapi.OperationalError, dbapi.InterfaceError)):
                raise ErpUnreachableError(
                    f"The ERP database {self.display_url} could not be reached while {action}: "
                    f"{reason}. Nothing was written; retry when it is back."
                ) from exc
            raise ErpError(
                f"The ERP at {self.display_url} failed while {action}: {reason}."
            ) from exc

    @contextmanager
    def _reading(self, action: str) -> Iterator[Connection]:
        """One read transaction: several selects see one consistent state."""
        with self._errors(action), self._engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def _writing(self, action: str, *, bulk_load: bool = False) -> Iterator[Connection]:
        """One write transaction: all of it is committed, or none of it.

        ``bulk_load`` (SQLite) skips fsyncs for this transaction: for the demo seed, which can
        simply be run again if the machine dies mid-load.
        """
        with self._errors(action), self._engine.connect() as conn:
            relax = bulk_load and self.dialect == "sqlite"
            if relax:
                driver_connection(conn).execute("PRAGMA synchronous=OFF")
            try:
                conn.execution_options(**{WRITE_OPTION: True})
                with conn.begin():
                    yield conn
            finally:
                if relax:
                    driver_connection(conn).execute("PRAGMA synchronous=NORMAL")

    # -- schema and health -------------------------------------------------------------------

    def create_schema(self) -> None:
        """Create the reference ERP's tables and indexes where missing (safe to run twice)."""
        path = sqlite_file(self._url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        with self._writing("creating the reference tables") as conn:
            schema.metadata.create_all(conn, checkfirst=True)

    def ping(self) -> None:
        """Check the database answers; raises :class:`ErpUnreachableError` if not."""
        with self._reading("checking the connection") as conn:
            conn.execute(sa.select(1)).scalar_one()

    # -- master data reads -------------------------------------------------------------------

    def read_table(self, name: str) -> pd.DataFrame:
        """A whole table (logical or contract name) as a typed frame, in primary-key order."""
        return self._read(schema.table(name))

    def _read(self, table: sa.Table, where: sa.ColumnElement[bool] | None = None) -> pd.DataFrame:
        names = [c.name for c in table.columns]
        stmt = sa.select(*raw_columns(table, names, self.dialect))
        if where is not None:
            stmt = stmt.where(where)
        stmt = stmt.order_by(*table.primary_key.columns)
        with self._reading(f"reading {table.name}") as conn:
            rows = fetch_raw(conn, stmt)
        return typed_frame(table, rows, names)

    def read_customers(self) -> pd.DataFrame:
        return self.read_table("customers")

    def read_products(self, skus: Iterable[str] | None = None) -> pd.DataFrame:
        """The catalogue, or only these SKUs (by primary key: a one-order run reads 3 rows of
        20,000)."""
        if skus is None:
            return self.read_table("products")
        products = schema.products
        return self._read_by_keys(products, [(products.c.sku, skus)])

    def read_tax_codes(self) -> pd.DataFrame:
        return self.read_table("tax_codes")

    def read_warehouses(self) -> pd.DataFrame:
        return self.read_table("warehouses")

    def read_price_lists(self) -> pd.DataFrame:
        return self.read_table("price_lists")

    def read_price_list_items(
        self,
        price_list_codes: Iterable[str] | None = None,
        skus: Iterable[str] | None = None,
    ) -> pd.DataFrame:
        """Every quantity break, or only those of these lists and SKUs.

        Both keys lead the primary key (price_list_code, sku, min_quantity), so the database
        seeks each (list, SKU) pair instead of scanning the table: the breaks one small batch
        of orders needs, out of a million rows, in milliseconds.
        """
        if price_list_codes is None and skus is None:
            return self.read_table("price_list_items")
        items = schema.price_list_items
        keys = [
            (column, values)
            for column, values in ((items.c.price_list_code, price_list_codes), (items.c.sku, skus))
            if values is not None
        ]
        return self._read_by_keys(items, keys)

    def _read_by_keys(
        self, table: sa.Table, keys: list[tuple[sa.Column[Any], Iterable[str]]]
    ) -> pd.DataFrame:
        """Rows whose columns take one of the given values each (IN lists, chunked under the
        databases' bound-parameter limits)."""
        wanted = [(column, sorted({str(v) for v in values})) for column, values in keys]
        if any(not values for _, values in wanted):
            return self._read(table, sa.false())
        frames = [
            self._read(
                table,
                sa.and_(
                    *(
                        column.in_(chunk)
                        for (column, _), chunk in zip(wanted, chunk_set, strict=True)
                    )
                ),
            )
            for chunk_set in itertools.product(
                *(list(chunks(values, _IN_CHUNK)) for _, values in wanted)
            )
        ]
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)

    def read_inventory(self) -> pd.DataFrame:
        return self.read_table("inventory")

    def changed_since(self, table: str, since: dt.datetime | None) -> dt.datetime | None:
        """The newest ``updated_at`` of ``table`` if a row changed after ``since``, else None.

        ``table`` is a logical name (``"customers"``, ``"products"``, ``"price_lists"``,
        ``"price_list_items"``, ``"inventory"``) or the contract's table name. Sensors keep the
        returned value as their cursor. Deleting a price bumps its list's ``updated_at``, so
        watch ``"price_lists"`` too to see deletions.
        """
        target = schema.table(table)
        if "updated_at" not in target.c:
            raise KeyError(f"{target.name} has no updated_at: it is not change-tracked")
        column = target.c.updated_at
        stmt = sa.select(sa.func.max(column))
        if since is not None:
            stmt = stmt.where(column > since)
        with self._reading(f"checking {target.name} for changes") as conn:
            return conn.execute(stmt).scalar_one_or_none()

    # -- sales orders ------------------------------------------------------------------------

    def existing_orders(self, external_refs: Iterable[str]) -> pd.DataFrame:
        """Sales orders already posted for these portal purchase ids.

        Columns: external_ref, order_no, status, gross_total, account_code, currency,
        payment_method (one row per ref found). The last three let the order intake rebuild the
        audit record of an order posted by a run that died before recording it.
        """
        refs = sorted({str(r) for r in external_refs})
        orders = schema.sales_orders
        wanted = [
            "external_ref",
            "order_no",
            "status",
            "gross_total",
            "account_code",
            "currency",
            "payment_method",
        ]
        rows: list[tuple[Any, ...]] = []
        with self._reading("looking up posted sales orders") as conn:
            for chunk in chunks(refs, _IN_CHUNK):
                stmt = (
                    sa.select(*raw_columns(orders, wanted, self.dialect))
                    .where(orders.c.external_ref.in_(chunk))
                    .order_by(orders.c.order_no)
                )
                rows.extend(fetch_raw(conn, stmt))
        return typed_frame(orders, rows, wanted)

    def post_sales_orders(self, orders: pd.DataFrame, lines: pd.DataFrame) -> pd.DataFrame:
        """Post a batch of sales orders and their lines in ONE transaction, idempotently.

        ``orders`` has the erp_sales_orders columns except order_no and created_at;
        ``lines`` has external_ref, line_no, sku, quantity, unit_price, line_net, tax_amount.
        An ``external_ref`` already in the ERP is skipped (its lines are not written again) and
        reported ``already_posted=True`` with its existing order number. If anything fails, the
        whole batch is rolled back: no order is ever half-posted.

        Returns one row per input order, in input order: external_ref, order_no, already_posted.
        """
        require_columns(orders, ORDER_COLUMNS, "orders")
        require_columns(lines, LINE_COLUMNS, "lines")
        refs = orders["external_ref"].astype(str)
        duplicated = refs[refs.duplicated()].unique().tolist()
        if duplicated:
            raise ValueError(f"the batch names the same order twice: {', '.join(duplicated)}")
        strays = sorted(set(lines["external_ref"].astype(str)) - set(refs))
        if strays:
            raise ValueError(f"lines refer to orders not in the batch: {', '.join(strays[:10])}")
        if orders.empty:
            return pd.DataFrame(
                {
                    name: pd.Series(dtype=dtype)
                    for name, dtype in zip(
                        POSTING_RESULT_COLUMNS, ("object", "int64", "bool"), strict=True
                    )
                }
            )

        header = orders[ORDER_COLUMNS].assign(external_ref=refs, created_at=utc_now())
        order_rows = records(schema.sales_orders, header)
        action = f"posting {len(order_rows)} sales orders (first {refs.iloc[0]})"
        with self._writing(action) as conn:
            created = self._insert_new_orders(conn, order_rows)
            posted_before = [r for r in refs if r not in created]
            existing: dict[str, int] = {}
            for chunk in chunks(posted_before, _IN_CHUNK):
                found = conn.execute(
                    sa.select(
                        schema.sales_orders.c.external_ref, schema.sales_orders.c.order_no
                    ).where(schema.sales_orders.c.external_ref.in_(chunk))
                ).all()
                existing.update({ref: int(no) for ref, no in found})
            lost = [r for r in posted_before if r not in existing]
            if lost:  # inserted by nobody and found nowhere: never report a number we lack
                raise ErpError(
                    f"The ERP at {self.display_url} neither created nor found sales orders "
                    f"{', '.join(lost[:10])}; nothing from this batch was saved, retry it."
                )
            new_lines = lines.assign(external_ref=lines["external_ref"].astype(str))
            new_lines = new_lines[new_lines["external_ref"].isin(created.keys())]
            if not new_lines.empty:
                new_lines = new_lines.assign(order_no=new_lines["external_ref"].map(created))
                conn.execute(
                    sa.insert(schema.sales_order_lines),
                    records(schema.sales_order_lines, new_lines),
                )

        numbers = {**existing, **created}
        return pd.DataFrame(
            {
                "external_ref": refs.to_numpy(dtype=object),
                "order_no": refs.map(numbers).astype("int64").to_numpy(),
                "already_posted": (~refs.isin(created.keys())).to_numpy(dtype=bool),
            }
        )

    def _insert_new_orders(self, conn: Connection, rows: list[dict[str, Any]]) -> dict[str, int]:
        """Insert the orders not yet in the ERP; return external_ref -> new order_no."""
        orders = schema.sales_orders
        returned = (orders.c.external_ref, orders.c.order_no)
        if self.dialect in ("sqlite", "postgresql"):
            # ON CONFLICT DO NOTHING: a ref posted by a concurrent run is skipped, not an error.
            dialect_insert = (
                sqlite_dialect.insert if self.dialect == "sqlite" else pg_dialect.insert
            )
            stmt = (
                dialect_insert(orders)
                .on_conflict_do_nothing(index_elements=["external_ref"])
                .returning(*returned)
            )
            result = conn.execute(stmt, rows)
            return {ref: int(no) for ref, no in result.all()}
        # Any other database: select-then-insert inside the transaction; the UNIQUE constraint
        # is the final guard (a concurrent duplicate rolls the batch back, and a retry skips it).
        refs = [r["external_ref"] for r in rows]
        taken: set[str] = set()
        for chunk in chunks(refs, _IN_CHUNK):
            taken.update(
                conn.execute(
                    sa.select(orders.c.external_ref).where(orders.c.external_ref.in_(chunk))
                )
                .scalars()
                .all()
            )
        fresh = [r for r in rows if r["external_ref"] not in taken]
        if not fresh:
            return {}
        conn.execute(sa.insert(orders), fresh)
        created: dict[str, int] = {}
        for chunk in chunks([r["external_ref"] for r in fresh], _IN_CHUNK):
            created.update(
                {
                    ref: int(no)
                    for ref, no in conn.execute(
                        sa.select(*returned).where(orders.c.external_ref.in_(chunk))
                    ).all()
                }
            )
        return created

    def read_sales_orders(self, start: dt.datetime, end: dt.datetime) -> pd.DataFrame:
        """Sales orders with ``start <= order_date < end`` (all erp_sales_orders columns)."""
        orders = schema.sales_orders
        where = sa.and_(orders.c.order_date >= start, orders.c.order_date < end)
        return self._read(orders, where)

    def priced_skus_not_in_catalogue(self) -> list[str]:
        """SKUs that have a price but no product record: one anti-join in the database, so a
        check over a million price rows moves a handful of codes, not the rows."""
        items, products = schema.price_list_items, schema.products
        stmt = (
            sa.select(items.c.sku)
            .distinct()
            .where(~sa.exists().where(products.c.sku == items.c.sku))
            .order_by(items.c.sku)
        )
        with self._reading("checking priced SKUs against the catalogue") as conn:
            return [row[0] for row in conn.execute(stmt)]

    def count_sales_orders(
        self, *, status: str, payment_methods: Iterable[str] | None = None
    ) -> int:
        """How many sales orders have ``status`` (and one of ``payment_methods``): one
        aggregate query, for the asset checks."""
        orders = schema.sales_orders
        stmt = sa.select(sa.func.count()).where(orders.c.status == status)
        if payment_methods is not None:
            stmt = stmt.where(orders.c.payment_method.in_(list(payment_methods)))
        with self._reading("counting sales orders") as conn:
            return int(conn.execute(stmt).scalar_one())

    def read_sales_order_lines(self, order_nos: Iterable[int] | None = None) -> pd.DataFrame:
        """Sales-order lines (all columns), for the given order numbers or all of them."""
        if order_nos is None:
            return self.read_table("sales_order_lines")
        numbers = sorted({int(n) for n in order_nos})
        lines = schema.sales_order_lines
        frames = [
            self._read(lines, lines.c.order_no.in_(chunk)) for chunk in chunks(numbers, _IN_CHUNK)
        ]
        return pd.concat(frames, ignore_index=True) if frames else self._read(lines, sa.false())

    # -- customers ---------------------------------------------------------------------------

    def create_customer(self, record: Mapping[str, Any]) -> None:
        """Create one ERP customer (the ``auto_create`` policy); an existing account is kept.

        ``record`` needs account_code, name, tax_code and currency; the other columns default
        to: no discount, no credit hold, active, updated now.
        """
        missing = [k for k in ("account_code", "name", "tax_code", "currency") if not record.get(k)]
        if missing:
            raise ValueError(f"a new ERP customer needs {', '.join(missing)}")
        row = {
            "discount_percentage": 0,
            "credit_hold": False,
            "active": True,
            "updated_at": utc_now(),
            **{k: v for k, v in record.items() if k in schema.customers.c},
        }
        frame = pd.DataFrame([row])
        with self._writing(f"creating customer {record['account_code']}") as conn:
            self._insert_ignoring_existing(conn, schema.customers, frame)

    # -- bulk writers ------------------------------------------------------------------------

    def _upsert(self, name: str, frame: pd.DataFrame) -> int:
        """Insert rows, replacing those whose primary key exists; one transaction, bulk."""
        table = schema.table(name)
        if "updated_at" in table.c and "updated_at" not in frame.columns:
            frame = frame.assign(updated_at=utc_now())
        keys = [c.name for c in table.primary_key.columns]
        require_columns(frame, keys, name)
        if frame.empty:
            return 0
        rows = records(table, frame)
        with self._writing(f"writing {len(rows)} rows to {table.name}") as conn:
            if self.dialect in ("sqlite", "postgresql"):
                dialect_insert = (
                    sqlite_dialect.insert if self.dialect == "sqlite" else pg_dialect.insert
                )
                stmt = dialect_insert(table)
                updates = {c: stmt.excluded[c] for c in rows[0] if c not in keys}
                stmt = (
                    stmt.on_conflict_do_update(index_elements=keys, set_=updates)
                    if updates
                    else stmt.on_conflict_do_nothing(index_elements=keys)
                )
                conn.execute(stmt, rows)
            else:
                for chunk in chunks(rows, _IN_CHUNK):
                    match = sa.tuple_(*[table.c[k] for k in keys]).in_(
                        [tuple(r[k] for k in keys) for r in chunk]
                    )
                    conn.execute(sa.delete(table).where(match))
                conn.execute(sa.insert(table), rows)
        return len(rows)

    def _insert_ignoring_existing(
        self, conn: Connection, table: sa.Table, frame: pd.DataFrame
    ) -> None:
        rows = records(table, frame)
        if self.dialect in ("sqlite", "postgresql"):
            dialect_insert = (
                sqlite_dialect.insert if self.dialect == "sqlite" else pg_dialect.insert
            )
            keys = [c.name for c in table.primary_key.columns]
            conn.execute(dialect_insert(table).on_conflict_do_nothing(index_elements=keys), rows)
            return
        keys = [c.name for c in table.primary_key.columns]
        for row in rows:
            exists = conn.execute(
                sa.select(sa.literal(1)).where(*[table.c[k] == row[k] for k in keys])
            ).first()
            if exists is None:
                conn.execute(sa.insert(table), [row])

    def replace_master_data(self, frames: Mapping[str, pd.DataFrame]) -> dict[str, int]:
        """Replace the named master-data tables with these frames, in one transaction.

        Used by the demo seed: the tables named (logical names from ``schema.MASTER_DATA``) are
        emptied and refilled in bulk (SQLite executemany, PostgreSQL COPY), so large seeds take
        seconds and a concurrent reader sees the old data or the new, never half. Sales orders
        are never touched. Returns rows written per table.
        """
        unknown = sorted(set(frames) - set(schema.MASTER_DATA))
        if unknown:
            raise KeyError(f"not master-data tables: {', '.join(unknown)}")
        order = [name for name in schema.MASTER_DATA if name in frames]
        total = sum(len(f) for f in frames.values())
        written: dict[str, int] = {}
        with self._writing(f"loading {total} master-data rows", bulk_load=True) as conn:
            self._empty_tables(conn, [schema.table(name) for name in order])
            for name in order:
                table = schema.table(name)
                frame = frames[name]
                keys = [c.name for c in table.primary_key.columns]
                require_columns(frame, keys, name)
                # Rows in key order fill the primary-key index by appending; the updated_at
                # index is rebuilt once at the end instead of updated a million times.
                if not references_itself(table):  # a parent must precede its children
                    frame = frame.sort_values(keys, kind="stable", ignore_index=True)
                # PostgreSQL checks a foreign key per row (a trigger each); adding it back
                # after the load validates every row in one join, three times faster.
                deferred_keys = (
                    list(table.foreign_key_constraints) if self.dialect == "postgresql" else []
                )
                for constraint in deferred_keys:
                    conn.execute(sa.schema.DropConstraint(constraint))
                for index in table.indexes:
                    index.drop(conn)
                bulk_insert(conn, table, frame)
                for index in table.indexes:
                    index.create(conn)
                for constraint in deferred_keys:
                    # isolate_from_table=False: the default would also strip the constraint
                    # from the shared MetaData, so later create_schema() calls would omit it.
                    conn.execute(sa.schema.AddConstraint(constraint, isolate_from_table=False))
                written[name] = len(frame)
        return written

    def _empty_tables(self, conn: Connection, tables: list[sa.Table]) -> None:
        """Delete every row of these tables (given parents first) inside the transaction."""
        loaded = set(tables)
        referenced_from_outside = any(
            fk.column.table in loaded and fk.parent.table not in loaded
            for other in schema.metadata.tables.values()
            for fk in other.foreign_keys
        )
        if self.dialect == "postgresql" and not referenced_from_outside:
            # TRUNCATE is transactional in PostgreSQL and skips a million-row DELETE's work.
            preparer = conn.dialect.identifier_preparer
            names = ", ".join(preparer.format_table(t) for t in tables)
            conn.exec_driver_sql(f"TRUNCATE {names}")
            return
        for table in reversed(tables):  # children first, so references never dangle
            conn.execute(sa.delete(table))
