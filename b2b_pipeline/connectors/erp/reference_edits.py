"""What the ERP's own users do to the reference ERP: put an account on credit hold, move it to
another group, change a price, set a stock level, load master data.

The pipeline never does any of this (it reads the ERP's master data and writes sales orders:
:class:`~b2b_pipeline.connectors.erp.gateway.ErpGateway`); the tests, the demo and the
benchmarks play the ERP's users with :class:`ReferenceErp`, the gateway plus these edits. Kept
apart so that the gateway holds only what the pipeline uses, and a test
(``test_erp_gateway.py``) proves the product's code never calls an edit.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pandas as pd
import sqlalchemy as sa

from b2b_pipeline.connectors.erp import schema
from b2b_pipeline.connectors.erp.frames import decimal4, utc_now
from b2b_pipeline.connectors.erp.gateway import ErpGateway

# The edits below, by name: the product's code must call none of them.
EDITS = (
    "upsert_customers",
    "set_credit_hold",
    "set_customer_group",
    "set_price",
    "delete_price",
    "upsert_price_lists",
    "upsert_price_list_items",
    "upsert_products",
    "set_stock",
)


class ReferenceErp(ErpGateway):
    """The reference ERP as its users change it (tests, the demo, benchmarks)."""

    def upsert_customers(self, customers: pd.DataFrame) -> int:
        """Insert or replace customers by account_code (``updated_at`` defaults to now)."""
        return self._upsert("customers", customers)

    def set_credit_hold(self, account_code: str, held: bool) -> None:
        """Put an account on credit hold, or release it."""
        self._update_customer(account_code, credit_hold=held)

    def set_customer_group(
        self, account_code: str, customer_group: str, price_list_code: str | None = None
    ) -> None:
        """Move an account to another group, and to that group's price list if given."""
        values: dict[str, Any] = {"customer_group": customer_group}
        if price_list_code is not None:
            values["price_list_code"] = price_list_code
        self._update_customer(account_code, **values)

    def _update_customer(self, account_code: str, **values: Any) -> None:
        customers = schema.customers
        stmt = (
            sa.update(customers)
            .where(customers.c.account_code == account_code)
            .values(**values, updated_at=utc_now())
        )
        with self._writing(f"updating customer {account_code}") as conn:
            if conn.execute(stmt).rowcount != 1:
                raise KeyError(f"no ERP customer {account_code!r}")

    def set_price(
        self, price_list_code: str, sku: str, min_quantity: int, unit_price: float | Decimal | str
    ) -> None:
        """Set one quantity-break price (insert or replace)."""
        frame = pd.DataFrame(
            [
                {
                    "price_list_code": price_list_code,
                    "sku": sku,
                    "min_quantity": int(min_quantity),
                    "unit_price": decimal4(unit_price),
                }
            ]
        )
        self._upsert("price_list_items", frame)

    def delete_price(self, price_list_code: str, sku: str, min_quantity: int | None = None) -> int:
        """Delete a SKU's break (or all its breaks) from a list; returns rows deleted.

        The list's ``updated_at`` is bumped so change detection notices the deletion.
        """
        items = schema.price_list_items
        stmt = sa.delete(items).where(
            items.c.price_list_code == price_list_code, items.c.sku == sku
        )
        if min_quantity is not None:
            stmt = stmt.where(items.c.min_quantity == int(min_quantity))
        lists = schema.price_lists
        with self._writing(f"deleting a price of {sku} from {price_list_code}") as conn:
            deleted = conn.execute(stmt).rowcount
            if deleted:
                conn.execute(
                    sa.update(lists)
                    .where(lists.c.code == price_list_code)
                    .values(updated_at=utc_now())
                )
        return int(deleted)

    def upsert_price_lists(self, price_lists: pd.DataFrame) -> int:
        return self._upsert("price_lists", price_lists)

    def upsert_price_list_items(self, items: pd.DataFrame) -> int:
        return self._upsert("price_list_items", items)

    def upsert_products(self, products: pd.DataFrame) -> int:
        return self._upsert("products", products)

    def set_stock(self, sku: str, warehouse_code: str, on_hand: int, allocated: int = 0) -> None:
        """Set one SKU's stock in one warehouse (insert or replace)."""
        frame = pd.DataFrame(
            [
                {
                    "sku": sku,
                    "warehouse_code": warehouse_code,
                    "on_hand": on_hand,
                    "allocated": allocated,
                }
            ]
        )
        self._upsert("inventory", frame)
