"""The reference ERP's tables (contracts/erp-reference-schema.md), as SQLAlchemy Core tables.

This is the only module that knows ERP table names: a merchant whose ERP differs replaces this
module and the gateway, nothing else. Column names are the contract; do not rename them.

Money is ``NUMERIC(14,4)``, quantities are integers, timestamps are UTC (:class:`UtcDateTime`
keeps them UTC on SQLite too, which has no time-zone type). Every ``updated_at`` that change
detection reads is indexed.

Added to the contract (adding is allowed, renaming is not):
- ``erp_price_lists.parent_code``: a customer-specific list's fallback group list
  (docs/architecture.md, "Price resolution").
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

UTC = dt.UTC

# Sales-order statuses the ERP knows (contract). PENDING_PAYMENT is valid for the ERP; the
# pipeline's mapping simply never chooses it for an on-account order.
SALES_ORDER_STATUSES = ("TO_BE_INVOICED", "PAID", "PENDING_PAYMENT", "ON_HOLD", "CANCELLED")


class UtcDateTime(sa.types.TypeDecorator[dt.datetime]):
    """A timestamp stored and returned in UTC on every database.

    Accepts aware datetimes (converted to UTC), naive ones (taken as UTC, the project's rule for
    timestamps) and dates (midnight UTC). Returns aware UTC datetimes, including on SQLite, which
    stores naive text: there the value is written as UTC text so text comparison is time order.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if hasattr(value, "to_pydatetime"):  # pandas.Timestamp
            value = value.to_pydatetime()
        if not isinstance(value, dt.datetime):
            if isinstance(value, dt.date):
                value = dt.datetime(value.year, value.month, value.day, tzinfo=UTC)
            else:
                raise TypeError(f"expected a datetime, got {type(value).__name__}: {value!r}")
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        # SQLite's text format has no offset: store the UTC wall-clock time.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _money() -> sa.Numeric:
    """A money column: NUMERIC(14,4), never float."""
    return sa.Numeric(14, 4)


def _percent() -> sa.Numeric:
    """A percentage such as a discount or a tax rate (20.0 means 20 %)."""
    return sa.Numeric(7, 4)


def _updated_at() -> sa.Column[dt.datetime]:
    return sa.Column("updated_at", UtcDateTime(), nullable=False, index=True)


# Named constraints and indexes: a bulk load drops and re-adds them by name, and a DBA reading
# an error sees which rule was broken. CHECK constraints carry explicit names below.
metadata = sa.MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ix": "ix_%(table_name)s_%(column_0_name)s",
    }
)

customers = sa.Table(
    "erp_customers",
    metadata,
    sa.Column("account_code", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("email", sa.String(254)),
    sa.Column("customer_group", sa.String(64)),
    sa.Column("price_list_code", sa.String(64)),
    sa.Column("discount_percentage", _percent(), nullable=False, server_default="0"),
    sa.Column("payment_terms", sa.String(16)),
    sa.Column("tax_code", sa.String(32), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("credit_limit", _money()),
    sa.Column("credit_hold", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()),
    _updated_at(),
)

tax_codes = sa.Table(
    "erp_tax_codes",
    metadata,
    sa.Column("code", sa.String(32), primary_key=True),
    sa.Column("description", sa.String(200), nullable=False),
    sa.Column("rate", _percent(), nullable=False),
)

products = sa.Table(
    "erp_products",
    metadata,
    sa.Column("sku", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()),
    _updated_at(),
)

price_lists = sa.Table(
    "erp_price_lists",
    metadata,
    sa.Column("code", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("parent_code", sa.String(64), sa.ForeignKey("erp_price_lists.code")),
    _updated_at(),
)

price_list_items = sa.Table(
    "erp_price_list_items",
    metadata,
    sa.Column(
        "price_list_code",
        sa.String(64),
        sa.ForeignKey("erp_price_lists.code", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("sku", sa.String(64), primary_key=True),
    sa.Column("min_quantity", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("unit_price", _money(), nullable=False),
    _updated_at(),
    sa.CheckConstraint("min_quantity >= 1", name="ck_erp_price_list_items_min_quantity"),
    sa.CheckConstraint("unit_price >= 0", name="ck_erp_price_list_items_unit_price"),
)

warehouses = sa.Table(
    "erp_warehouses",
    metadata,
    sa.Column("code", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
)

inventory = sa.Table(
    "erp_inventory",
    metadata,
    sa.Column("sku", sa.String(64), primary_key=True),
    sa.Column(
        "warehouse_code", sa.String(32), sa.ForeignKey("erp_warehouses.code"), primary_key=True
    ),
    sa.Column("on_hand", sa.Integer(), nullable=False),
    sa.Column("allocated", sa.Integer(), nullable=False, server_default="0"),
    _updated_at(),
)

sales_orders = sa.Table(
    "erp_sales_orders",
    metadata,
    # Assigned by the ERP. AUTOINCREMENT on SQLite so a number is never reused, even after the
    # newest order is deleted (an order number printed on an invoice must stay unique).
    sa.Column("order_no", sa.Integer(), primary_key=True, autoincrement=True),
    # The portal purchase id: UNIQUE is what makes posting idempotent.
    sa.Column("external_ref", sa.String(64), nullable=False, unique=True),
    sa.Column("account_code", sa.String(32), nullable=False),
    sa.Column("po_number", sa.String(100)),
    sa.Column("order_date", UtcDateTime(), nullable=False, index=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("payment_method", sa.String(50)),
    sa.Column("payment_terms", sa.String(16)),
    sa.Column("tax_code", sa.String(32)),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("net_total", _money(), nullable=False),
    sa.Column("tax_total", _money(), nullable=False),
    sa.Column("gross_total", _money(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.CheckConstraint(
        "status IN (" + ", ".join(f"'{s}'" for s in SALES_ORDER_STATUSES) + ")",
        name="ck_erp_sales_orders_status",
    ),
    sqlite_autoincrement=True,
)

sales_order_lines = sa.Table(
    "erp_sales_order_lines",
    metadata,
    sa.Column(
        "order_no",
        sa.Integer(),
        sa.ForeignKey("erp_sales_orders.order_no", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    sa.Column("line_no", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("sku", sa.String(64), nullable=False),
    sa.Column("quantity", sa.Integer(), nullable=False),
    sa.Column("unit_price", _money(), nullable=False),
    sa.Column("line_net", _money(), nullable=False),
    sa.Column("tax_amount", _money(), nullable=False),
    sa.CheckConstraint("quantity > 0", name="ck_erp_sales_order_lines_quantity"),
)

# Logical names (what the rest of the project says) -> tables. Callers of the gateway use these
# names, or the contract's table names, never a Table object.
TABLES: dict[str, sa.Table] = {
    "customers": customers,
    "tax_codes": tax_codes,
    "products": products,
    "price_lists": price_lists,
    "price_list_items": price_list_items,
    "warehouses": warehouses,
    "inventory": inventory,
    "sales_orders": sales_orders,
    "sales_order_lines": sales_order_lines,
}

# Master data: what the ERP's owners maintain and the demo seeds, in dependency order
# (a table's references come before it). Sales orders are business history, never seeded.
MASTER_DATA = (
    "tax_codes",
    "warehouses",
    "products",
    "price_lists",
    "price_list_items",
    "customers",
    "inventory",
)

# Tables whose ``updated_at`` change detection watches.
CHANGE_TRACKED = ("customers", "products", "price_lists", "price_list_items", "inventory")


def table(name: str) -> sa.Table:
    """The table for a logical name (``"customers"``) or a contract name (``"erp_customers"``)."""
    found = TABLES.get(name)
    if found is None:
        found = TABLES.get(name.removeprefix("erp_"))
    if found is None:
        known = ", ".join(TABLES)
        raise KeyError(f"unknown ERP table {name!r}; known: {known}")
    return found
