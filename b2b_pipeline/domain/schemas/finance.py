"""Pandera models for month-end finance: reconciliation lines, the per-account summary and the
daily totals of the close pack.

Column names are the contract's (``reconciliation_lines`` and ``v_month_end_reconciliation`` in
contracts/audit-and-finance.md). Each field carries a description, so the Dagster side can
publish the column schema (``dagster/column_schema``) without this module importing Dagster.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from b2b_pipeline.domain.reconciliation import Outcome

MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"
CURRENCY_CODE = r"^[A-Z]{3}$"
# Differences are stored to 4 places (ERP NUMERIC(14,4)); allow for float rounding when checking
# that difference = ERP gross - portal gross.
_MONEY_SLACK = 1e-6


class ReconciliationLineSchema(pa.DataFrameModel):
    """One order of a month compared across the portal and the ERP."""

    month: Series[str] = pa.Field(str_matches=MONTH_PATTERN, description="Month, YYYY-MM (UTC)")
    portal_order_id: Series[str] = pa.Field(
        nullable=True, description="SparkLayer purchase id; empty when the portal has no order"
    )
    erp_order_no: Series[pd.Int64Dtype] = pa.Field(
        nullable=True, description="ERP sales order number; empty when the ERP has no order"
    )
    account_code: Series[str] = pa.Field(
        nullable=True, description="ERP account the order is booked to (portal's when not posted)"
    )
    currency: Series[str] = pa.Field(
        nullable=True, str_matches=CURRENCY_CODE, description="ISO 4217 code"
    )
    portal_gross: Series[float] = pa.Field(
        nullable=True, description="Portal checkout total; empty on ERP-only and duplicate lines"
    )
    erp_gross: Series[float] = pa.Field(
        nullable=True, description="ERP sales order gross total; empty when not in the ERP"
    )
    difference: Series[float] = pa.Field(
        nullable=True, description="ERP gross minus portal gross (a missing side counts as 0)"
    )
    outcome: Series[str] = pa.Field(
        isin=[outcome.value for outcome in Outcome], description="The verdict on this order"
    )
    reason: Series[str] = pa.Field(description="What happened and what to do, in plain words")

    @pa.dataframe_check
    @classmethod
    def difference_is_erp_minus_portal(cls, frame: pd.DataFrame) -> pd.Series:
        expected = frame["erp_gross"].fillna(0) - frame["portal_gross"].fillna(0)
        return (frame["difference"] - expected).abs() <= _MONEY_SLACK

    @pa.dataframe_check
    @classmethod
    def every_line_names_an_order(cls, frame: pd.DataFrame) -> pd.Series:
        return frame["portal_order_id"].notna() | frame["erp_order_no"].notna()

    class Config:
        strict = True
        ordered = True


class MonthEndSummarySchema(pa.DataFrameModel):
    """Per month, account and currency: what each system booked and what differs."""

    month: Series[str] = pa.Field(str_matches=MONTH_PATTERN, description="Month, YYYY-MM (UTC)")
    account_code: Series[str] = pa.Field(nullable=True, description="ERP account code")
    currency: Series[str] = pa.Field(nullable=True, description="ISO 4217 code")
    portal_orders: Series[int] = pa.Field(ge=0, description="Portal orders placed in the month")
    erp_orders: Series[int] = pa.Field(ge=0, description="ERP sales orders compared")
    portal_gross: Series[float] = pa.Field(description="Sum of portal checkout totals")
    erp_gross: Series[float] = pa.Field(description="Sum of ERP gross totals")
    variance: Series[float] = pa.Field(description="ERP gross minus portal gross")
    missing_in_erp: Series[int] = pa.Field(ge=0, description="Portal orders not in the ERP")
    missing_in_portal: Series[int] = pa.Field(ge=0, description="ERP orders with no portal order")
    amount_mismatches: Series[int] = pa.Field(ge=0, description="Orders whose totals differ")
    open_exceptions: Series[int] = pa.Field(ge=0, description="Orders held in the queue")

    @pa.dataframe_check
    @classmethod
    def variance_is_erp_minus_portal(cls, frame: pd.DataFrame) -> pd.Series:
        expected = frame["erp_gross"] - frame["portal_gross"]
        return (frame["variance"] - expected).abs() <= _MONEY_SLACK

    class Config:
        strict = True
        ordered = True


class DailyTotalsSchema(pa.DataFrameModel):
    """Per day and currency, what each system booked (the close pack's chart)."""

    day: Series[pa.DateTime] = pa.Field(description="Calendar day (UTC), midnight")
    currency: Series[str] = pa.Field(nullable=True, description="ISO 4217 code")
    portal_orders: Series[int] = pa.Field(ge=0, description="Portal orders placed that day")
    portal_gross: Series[float] = pa.Field(description="Their checkout totals")
    erp_orders: Series[int] = pa.Field(ge=0, description="ERP sales orders dated that day")
    erp_gross: Series[float] = pa.Field(description="Their gross totals")
    difference: Series[float] = pa.Field(description="ERP gross minus portal gross")

    class Config:
        strict = True
        ordered = True
