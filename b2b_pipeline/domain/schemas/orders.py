"""Pandera models for the order flow: portal orders and lines in, ERP sales orders and lines out.

``PortalOrders`` / ``PortalOrderLines`` describe a purchase after flattening
(:func:`b2b_pipeline.domain.orders.normalise_purchases`); the same models find the malformed
ones, validated lazily so that every failing row is reported and routed to the exception queue
instead of failing the batch. ``SalesOrders`` / ``SalesOrderLines`` are the shape the ERP
gateway's ``post_sales_orders`` takes.

Each field carries a description, so the Dagster side can publish the column schema
(``dagster/column_schema``) from :func:`column_descriptions` without this module importing Dagster.
"""

from __future__ import annotations

import re
from typing import Annotated

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

# Longest free text accepted from the portal in a PO number, a name or a SKU-like field. Longer
# values are a broken or hostile payload, not a purchase order reference (ERP po_number is 100).
MAX_TEXT_LENGTH = 100
# C0/C1 control characters, and the invisible or direction-changing Unicode marks that make a
# string display differently from what it contains (zero-width, bidi overrides and isolates).
UNSAFE_TEXT = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
CURRENCY_CODE = r"^[A-Z]{3}$"
# ERP statuses a posted order may have: never PENDING_PAYMENT (nothing would ever confirm an
# on-account order) and never CANCELLED (the pipeline does not post cancelled orders).
POSTABLE_STATUSES = ["TO_BE_INVOICED", "PAID", "ON_HOLD"]

UtcTimestamp = Annotated[pd.DatetimeTZDtype, "ns", "UTC"]


def is_safe_text(values: pd.Series) -> pd.Series[bool]:
    """True where a string has no control or invisible characters (missing values pass)."""
    return ~values.astype("string").str.contains(UNSAFE_TEXT.pattern, regex=True).fillna(False)


class PortalOrders(pa.DataFrameModel):
    """One row per portal purchase, flattened from the purchase JSON."""

    portal_order_id: Series[str] = pa.Field(
        unique=True, description="SparkLayer purchase id (the ERP's external_ref)"
    )
    visible_id: Series[str] = pa.Field(
        nullable=True, description="Order number the buyer sees, e.g. SL-100042"
    )
    type: Series[str] = pa.Field(
        description="Purchase type: order, order_unconfirmed, awaiting_approval, quote, cart"
    )
    fulfilment_status: Series[str] = pa.Field(
        nullable=True, description="Portal fulfilment status, e.g. processing, cancelled"
    )
    customer_sparklayer_id: Series[str] = pa.Field(description="SparkLayer id of the buyer")
    accounting_id: Series[str] = pa.Field(
        nullable=True, description="ERP account code the portal company maps to (None: unmapped)"
    )
    company_name: Series[str] = pa.Field(
        nullable=True,
        str_length={"max_value": MAX_TEXT_LENGTH},
        description="Portal company name",
    )
    currency: Series[str] = pa.Field(str_matches=CURRENCY_CODE, description="ISO 4217 code")
    payment_method: Series[str] = pa.Field(
        nullable=True, description="on_account, invoice or platform_upfront"
    )
    paid: Series[bool] = pa.Field(
        description="Paid at checkout (platform_upfront) or by applied transactions"
    )
    po_number: Series[str] = pa.Field(
        nullable=True,
        str_length={"max_value": MAX_TEXT_LENGTH},
        description="Buyer's purchase order reference (customer_reference)",
    )
    tax_exempt: Series[bool] = pa.Field(description="The portal company is tax exempt")
    portal_net: Series[float] = pa.Field(ge=0, description="Sum of the portal's line nets")
    portal_tax: Series[float] = pa.Field(ge=0, description="Sum of the portal's line taxes")
    portal_gross: Series[float] = pa.Field(
        ge=0, description="Checkout total the buyer saw (calculated_total)"
    )
    placed_at: Series[UtcTimestamp] = pa.Field(nullable=True, description="When it was placed")
    updated_at: Series[UtcTimestamp] = pa.Field(description="Last change on the portal")
    payload: Series[str] = pa.Field(description="The purchase JSON as received")

    @pa.check("company_name", "po_number", name="no_control_characters")
    @classmethod
    def _no_control_characters(cls, values: Series[str]) -> pd.Series[bool]:
        return is_safe_text(values)

    class Config:
        strict = False
        ordered = False


class PortalOrderLines(pa.DataFrameModel):
    """One row per line of a portal purchase."""

    portal_order_id: Series[str] = pa.Field(description="SparkLayer purchase id")
    line_no: Series[int] = pa.Field(ge=1, description="Position in the purchase, from 1")
    sku: Series[str] = pa.Field(
        str_length={"min_value": 1, "max_value": MAX_TEXT_LENGTH}, description="Product SKU"
    )
    quantity: Series[int] = pa.Field(gt=0, description="Units ordered (a positive whole number)")
    portal_unit_price: Series[float] = pa.Field(
        ge=0, description="Portal net unit price (line net ÷ quantity)"
    )
    portal_line_net: Series[float] = pa.Field(ge=0, description="Portal line net")
    portal_line_tax: Series[float] = pa.Field(ge=0, description="Portal line tax")

    @pa.check("sku", name="no_control_characters")
    @classmethod
    def _no_control_characters(cls, values: Series[str]) -> pd.Series[bool]:
        return is_safe_text(values)

    class Config:
        strict = False
        ordered = False


class SalesOrders(pa.DataFrameModel):
    """ERP sales-order headers to post (``ErpGateway.post_sales_orders``)."""

    external_ref: Series[str] = pa.Field(unique=True, description="The portal purchase id")
    account_code: Series[str] = pa.Field(description="ERP account")
    po_number: Series[str] = pa.Field(nullable=True, description="Buyer's PO reference")
    order_date: Series[UtcTimestamp] = pa.Field(description="When the buyer placed the order")
    status: Series[str] = pa.Field(isin=POSTABLE_STATUSES, description="ERP sales-order status")
    payment_method: Series[str] = pa.Field(description="Portal payment method")
    payment_terms: Series[str] = pa.Field(nullable=True, description="Account terms, e.g. NET30")
    tax_code: Series[str] = pa.Field(description="ERP tax code of the account")
    currency: Series[str] = pa.Field(str_matches=CURRENCY_CODE, description="ISO 4217 code")
    net_total: Series[float] = pa.Field(ge=0, description="Sum of line nets")
    tax_total: Series[float] = pa.Field(ge=0, description="Sum of line taxes")
    gross_total: Series[float] = pa.Field(ge=0, description="net_total + tax_total")

    @pa.dataframe_check(name="gross_is_net_plus_tax")
    @classmethod
    def _gross_is_net_plus_tax(cls, frame: pd.DataFrame) -> pd.Series[bool]:
        return (frame["gross_total"] - frame["net_total"] - frame["tax_total"]).abs() < 0.005

    class Config:
        strict = True
        ordered = False


class SalesOrderLines(pa.DataFrameModel):
    """ERP sales-order lines to post, keyed by the order's external_ref."""

    external_ref: Series[str] = pa.Field(description="The portal purchase id")
    line_no: Series[int] = pa.Field(ge=1, description="Position in the order, from 1")
    sku: Series[str] = pa.Field(description="Product SKU")
    quantity: Series[int] = pa.Field(gt=0, description="Units")
    unit_price: Series[float] = pa.Field(ge=0, description="Net unit price posted")
    line_net: Series[float] = pa.Field(ge=0, description="unit_price × quantity, 2 dp")
    tax_amount: Series[float] = pa.Field(ge=0, description="round(line_net × rate / 100, 2)")

    class Config:
        strict = True
        ordered = False


def column_descriptions(model: type[pa.DataFrameModel]) -> list[tuple[str, str, str]]:
    """(name, dtype, description) per column: the input for a Dagster column schema."""
    schema = model.to_schema()
    return [
        (name, str(column.dtype), column.description or "")
        for name, column in schema.columns.items()
    ]
