"""The ERP's view of an order beside the portal's, for a pricing exception's page.

The portal's side is the purchase as received (the exception's payload), read by the wire
module and ``domain.purchases``. The ERP's side is the ERP's own calculation for the account
*now*, by the one price rule (``domain.pricing.resolve_unit_prices`` and ``line_amounts``, the
functions the order check uses): lowest break reached on the account's list and its parent,
minus the account's discount, tax per line at the account's tax-code rate. "Now" on purpose:
it is what a retry would post, so a price-list fix made since the exception shows here before
anyone retries.

Reading the ERP's price lists costs a full read of the price table, so this runs only on the
page of one pricing exception, never in a list.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from b2b_pipeline.connectors.sparklayer.purchases import read_purchases
from b2b_pipeline.domain.pricing import line_amounts, resolve_unit_prices, round_half_up
from b2b_pipeline.domain.purchases import normalise_purchases
from b2b_pipeline.flows.ports import Erp

# Float sums of 2-dp amounts drift by ~1e-12; a difference under this is no difference.
_SLACK = 1e-6


@dataclass(frozen=True)
class LineView:
    line_no: int
    sku: str
    quantity: int
    portal_unit_price: float | None
    erp_unit_price: float | None
    portal_line_net: float | None
    erp_line_net: float | None
    erp_price_list: str | None
    differs: bool


@dataclass(frozen=True)
class OrderPriceView:
    currency: str | None
    account_code: str
    portal_net: float | None
    portal_tax: float | None
    portal_gross: float | None
    erp_net: float | None
    erp_tax: float | None
    erp_gross: float | None
    lines: list[LineView] = field(default_factory=list)
    # Why the ERP could not price all of it (an unknown account, a SKU with no price).
    problems: list[str] = field(default_factory=list)

    @property
    def differing_lines(self) -> list[LineView]:
        return [line for line in self.lines if line.differs]

    @property
    def difference(self) -> float | None:
        if self.erp_gross is None or self.portal_gross is None:
            return None
        return round(self.erp_gross - self.portal_gross, 2)


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(number) else number


def order_price_view(
    payload: str | dict[str, Any] | None,
    account_code: str | None,
    *,
    erp: Erp,
    tolerance: float,
) -> OrderPriceView | None:
    """Both views of the order in ``payload`` for ``account_code``; None when the payload is
    not a readable order (a malformed order has no prices to compare)."""
    if not account_code:
        return None
    try:
        document = json.loads(payload) if isinstance(payload, str) else payload
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    normalised = normalise_purchases(
        read_purchases([document]),
        pd.DataFrame(columns=["id", "accounting_id", "company_name", "tax_exempt"]),
    )
    if normalised.orders.empty:
        return None
    order = normalised.orders.iloc[0]
    lines = normalised.lines.reset_index(drop=True)

    customers = erp.read_customers()
    account = customers[customers["account_code"] == account_code]
    problems: list[str] = []
    if account.empty:
        problems.append(f"The ERP has no account {account_code}.")
    skus = set(lines["sku"].astype(str))
    items = erp.read_price_list_items()
    items = items[items["sku"].astype(str).isin(skus)]
    resolved = resolve_unit_prices(
        pd.DataFrame(
            {
                "line_key": np.arange(len(lines)),
                "account_code": account_code,
                "sku": lines["sku"].to_numpy(),
                "quantity": lines["quantity"].to_numpy(),
            }
        ),
        account,
        erp.read_price_lists(),
        items,
    )
    rate = 0.0
    if not account.empty:
        tax_codes = erp.read_tax_codes()
        code = account.iloc[0]["tax_code"]
        found = tax_codes.loc[tax_codes["code"] == code, "rate"]
        if found.empty:
            problems.append(f"The ERP has no rate for tax code {code}.")
        else:
            rate = float(found.iloc[0])
    erp_unit = resolved["erp_unit_price"].to_numpy(dtype="float64")
    erp_net, erp_tax = line_amounts(erp_unit, lines["quantity"].to_numpy(), rate)
    portal_unit = lines["portal_unit_price"].to_numpy(dtype="float64")
    differs = np.isnan(erp_unit) | (np.abs(portal_unit - erp_unit) > tolerance + _SLACK)
    unpriced = lines.loc[np.isnan(erp_unit), "sku"].astype(str).tolist()
    if unpriced and not account.empty:
        problems.append(
            f"The account's ERP price lists have no price for {', '.join(sorted(set(unpriced)))}."
        )
    priced = not unpriced and not account.empty
    net_total = round_half_up(float(np.nansum(erp_net)), 2) if priced else None
    tax_total = round_half_up(float(np.nansum(erp_tax)), 2) if priced else None
    return OrderPriceView(
        currency=order.get("currency"),
        account_code=account_code,
        portal_net=_float(order.get("portal_net")),
        portal_tax=_float(order.get("portal_tax")),
        portal_gross=_float(order.get("portal_gross")),
        erp_net=net_total,
        erp_tax=tax_total,
        erp_gross=round_half_up(net_total + tax_total, 2) if priced else None,  # type: ignore[operator]
        lines=[
            LineView(
                line_no=int(line["line_no"]),
                sku=str(line["sku"]),
                quantity=int(line["quantity"]),
                portal_unit_price=_float(line["portal_unit_price"]),
                erp_unit_price=_float(erp_unit[i]),
                portal_line_net=_float(line["portal_line_net"]),
                erp_line_net=_float(erp_net[i]),
                erp_price_list=resolved["source_list"].iloc[i],
                differs=bool(differs[i]),
            )
            for i, line in enumerate(lines.to_dict(orient="records"))
        ],
        problems=problems,
    )
