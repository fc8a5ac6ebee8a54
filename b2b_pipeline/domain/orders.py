"""Portal orders -> ERP sales orders: the order rules of DESIGN.md, applied in order.

1. **Type**: only live purchases (``mappings.live_types``, default ``order``, not cancelled) go
   on; the rest are ``filtered`` (not exceptions) and posted once, when they become live.
2. **Account mapping**: the order's ERP account is an approved override, else the portal's
   ``accounting_id``; none is ``UNMAPPED_ACCOUNT`` (or, under ``auto_create``, a new account),
   one the ERP does not know is ``UNKNOWN_ACCOUNT``.
3. **Authorisation**: inactive ``ACCOUNT_INACTIVE``; credit hold ``ACCOUNT_ON_HOLD`` (an
   approved override posts it ``ON_HOLD``).
4. **Catalogue and tax**: ``UNKNOWN_SKU``, ``UNMAPPED_TAX_CODE``, ``TAX_TREATMENT_MISMATCH``,
   ``CURRENCY_MISMATCH``, ``UNMAPPED_PAYMENT_METHOD``.
5. **Pricing**: the ERP's calculation (``domain/pricing.py``) against the portal's lines and
   checkout total: ``NO_ERP_PRICE``, ``PRICE_MISMATCH`` (an approved override accepts one price).
6. **Payment**: the payment method's ERP status, never ``PENDING_PAYMENT``.

**One exception per order**: the first rule that fails. A later rule is not evaluated for that
order, because its answer could change once the first problem is fixed (a mapped account brings
its own price list, tax code and currency); the retry replays every rule.

An order the ERP already has (``posted_refs``) is ``already_posted`` whatever its portal type:
the ERP is the record, and a later cancellation is a reconciliation difference, not a reason to
post or filter it again. Within tolerance the ERP's line prices are posted: the ERP is the system
of record.

Everything here is pure and vectorised over the batch; the per-rule functions live in
``domain/order_rules.py`` and reading the purchases in ``domain/purchases.py`` (the document
itself is the SparkLayer connector's, ``connectors/sparklayer/purchases.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from b2b_pipeline.config.mappings import Mappings
from b2b_pipeline.domain.exceptions import exception_frame
from b2b_pipeline.domain.order_rules import (
    ERP_CUSTOMER_COLUMNS,
    Pricing,
    check_authorisation,
    check_currency,
    check_payment_method,
    check_skus,
    check_tax_code,
    check_tax_treatment,
    erp_status,
    filtered_frame,
    lines_of,
    live_orders,
    map_accounts,
    price_orders,
)
from b2b_pipeline.domain.pricing import round_half_up
from b2b_pipeline.domain.purchases import NormalisedOrders, normalise_purchases
from b2b_pipeline.domain.schemas.orders import SalesOrderLines, SalesOrders

__all__ = [
    "ErpSnapshot",
    "NormalisedOrders",
    "OrderDecisions",
    "decide_orders",
    "normalise_purchases",
]

SALES_ORDER_COLUMNS = list(SalesOrders.to_schema().columns)
SALES_ORDER_LINE_COLUMNS = list(SalesOrderLines.to_schema().columns)
ACCEPTED_PRICES = ("erp_price", "portal_price")


@dataclass(frozen=True)
class ErpSnapshot:
    """The ERP records the rules read, in the reference ERP contract's column names.

    ``price_lists`` carries the added ``parent_code``. Money may be float or Decimal.
    """

    customers: pd.DataFrame
    products: pd.DataFrame
    tax_codes: pd.DataFrame
    price_lists: pd.DataFrame
    price_list_items: pd.DataFrame


@dataclass(frozen=True)
class OrderDecisions:
    """What to do with each order of a batch; every live order is in exactly one frame.

    - ``to_post`` / ``to_post_lines``: ERP sales orders and lines (``SalesOrders`` /
      ``SalesOrderLines``, the shape ``ErpGateway.post_sales_orders`` takes);
    - ``filtered``: ``portal_order_id``, ``type``, ``reason`` (not live; not exceptions);
    - ``exceptions``: exception rows (``exception_frame`` shape, entity ``order``);
    - ``already_posted``: ``portal_order_id``, ``visible_id``, ``type`` (in the ERP already);
    - ``accounts_to_create``: ERP customer records (``auto_create`` policy), to create before
      posting.
    """

    to_post: pd.DataFrame
    to_post_lines: pd.DataFrame
    filtered: pd.DataFrame
    exceptions: pd.DataFrame
    already_posted: pd.DataFrame
    accounts_to_create: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=ERP_CUSTOMER_COLUMNS)
    )

    def counts(self) -> dict[str, int]:
        """Orders per outcome, for run metadata."""
        return {
            "to_post": len(self.to_post),
            "already_posted": len(self.already_posted),
            "filtered": len(self.filtered),
            "exceptions": len(self.exceptions),
            "accounts_to_create": len(self.accounts_to_create),
        }


@dataclass(frozen=True)
class _Overrides:
    """Approved decisions per order, aligned on the batch's orders."""

    accept: pd.Series  # "erp_price" | "portal_price" | None
    account_code: pd.Series  # str | None
    post_on_hold: pd.Series  # bool


def _decision_fields(decision: Any) -> dict[str, Any]:
    if isinstance(decision, str) and decision.strip():
        try:
            decision = json.loads(decision)
        except json.JSONDecodeError:
            return {}
    return decision if isinstance(decision, dict) else {}


def _overrides(overrides: pd.DataFrame | None, orders: pd.DataFrame) -> _Overrides:
    """Read approved decisions, given as columns (``accept``, ``account_code``,
    ``post_on_hold``) or as a ``decision`` dict / JSON per row. Several rows for one order are
    merged, later rows winning. An ``accept`` other than erp_price / portal_price is ignored, so
    the rule it meant to settle stops the order again, visibly."""
    merged: dict[str, dict[str, Any]] = {}
    if overrides is not None and len(overrides):
        flat = [c for c in ("accept", "account_code", "post_on_hold") if c in overrides.columns]
        # One row per approved exception, a handful per batch: a loop reads best here.
        for row in overrides.to_dict(orient="records"):
            fields = _decision_fields(row.get("decision"))
            fields.update({c: row[c] for c in flat if pd.notna(row[c])})
            merged.setdefault(str(row["portal_order_id"]), {}).update(fields)
    accept = {k: v["accept"] for k, v in merged.items() if v.get("accept") in ACCEPTED_PRICES}
    account = {
        k: v["account_code"].strip()
        for k, v in merged.items()
        if isinstance(v.get("account_code"), str) and v["account_code"].strip()
    }
    on_hold = {k for k, v in merged.items() if str(v.get("post_on_hold")).lower() in ("true", "1")}
    ids = orders["portal_order_id"]
    return _Overrides(
        accept=_aligned(ids, accept),
        account_code=_aligned(ids, account),
        post_on_hold=ids.isin(on_hold) if on_hold else pd.Series(False, index=orders.index),
    )


def _aligned(ids: pd.Series, values: dict[str, str]) -> pd.Series:
    """Per order (on the orders' index): the value given for its id, else None."""
    if not values:
        return pd.Series(None, index=ids.index, dtype=object)
    return ids.map(values).astype(object).where(ids.isin(list(values)), None)


def _account_table(customers: pd.DataFrame, to_create: pd.DataFrame) -> pd.DataFrame:
    """ERP accounts (plus the ones about to be created), one row per code, numbers as floats."""
    table = customers.reindex(columns=ERP_CUSTOMER_COLUMNS)
    if not to_create.empty:
        table = pd.concat([table, to_create.astype(object)], ignore_index=True)
    table = table.drop_duplicates("account_code")
    table["discount_percentage"] = pd.to_numeric(
        table["discount_percentage"], errors="coerce"
    ).fillna(0.0)
    # The ERP columns are NOT NULL; SQLite may hand them over as 0/1, hence eq() not astype().
    table["credit_hold"] = table["credit_hold"].eq(True).astype(bool)
    table["active"] = ~table["active"].eq(False).astype(bool)
    return table.reset_index(drop=True)


def _with_account(
    orders: pd.DataFrame,
    account_code: pd.Series,
    accounts: pd.DataFrame,
    tax_codes: pd.DataFrame,
) -> pd.DataFrame:
    """The orders with their ERP account's terms, tax code, tax rate and currency."""
    terms = accounts.set_index("account_code")[
        ["active", "credit_hold", "price_list_code", "payment_terms", "tax_code", "currency"]
    ].rename(columns={"currency": "account_currency"})
    rates = pd.to_numeric(
        tax_codes.drop_duplicates("code").set_index("code")["rate"], errors="coerce"
    )
    joined = orders.assign(account_code=account_code.reindex(orders.index)).join(
        terms, on="account_code"
    )
    joined["tax_rate"] = joined["tax_code"].map(rates).astype("float64")
    return joined


def _exception_rows(
    orders: pd.DataFrame, found: pd.DataFrame, account_code: pd.Series
) -> pd.DataFrame:
    if found.empty:
        return exception_frame()
    rows = pd.DataFrame(
        {
            "entity": "order",
            "entity_key": orders.loc[found.index, "portal_order_id"].to_numpy(),
            "account_code": account_code.reindex(found.index).to_numpy(),
            "reason_code": found["reason_code"].to_numpy(),
            "message": found["message"].to_numpy(),
            "payload": orders.loc[found.index, "payload"].to_numpy(),
        }
    )
    return exception_frame(rows)


def decide_orders(
    orders: pd.DataFrame,
    lines: pd.DataFrame,
    erp: ErpSnapshot,
    mappings: Mappings,
    *,
    posted_refs: set[str],
    overrides: pd.DataFrame | None = None,
) -> OrderDecisions:
    """Apply the order rules to a batch of normalised orders (``normalise_purchases``).

    Args:
        orders / lines: ``PortalOrders`` / ``PortalOrderLines`` frames.
        erp: the ERP's current records.
        mappings: the business mapping file.
        posted_refs: portal purchase ids the ERP already has as ``external_ref``.
        overrides: approved decisions for retried orders, per ``portal_order_id``: ``accept``
            (``erp_price`` | ``portal_price``), ``account_code``, ``post_on_hold``; as columns or
            as a ``decision`` dict/JSON column.
    """
    orders = orders.drop_duplicates("portal_order_id", keep="last").reset_index(drop=True)
    order_pos = (
        pd.Index(orders["portal_order_id"]).get_indexer(lines["portal_order_id"])
        if len(orders)
        else np.full(len(lines), -1, dtype="int64")
    )
    approved = _overrides(overrides, orders)

    posted = orders["portal_order_id"].isin(posted_refs)
    live = live_orders(orders, mappings.live_types)
    already_posted = orders.loc[posted, ["portal_order_id", "visible_id", "type"]]
    filtered = filtered_frame(orders[~posted & ~live], mappings.live_types)

    # Rule 2: account mapping.
    pending = orders[~posted & live]
    mapping = map_accounts(pending, erp.customers, erp.price_lists, mappings, approved.account_code)
    stopped = [mapping.failures]
    accounts = _account_table(erp.customers, mapping.accounts_to_create)
    pending = _with_account(
        pending.drop(index=mapping.failures.index), mapping.account_code, accounts, erp.tax_codes
    )

    # Rules 3 and 4, in order: each sees only the orders the previous ones let through.
    rules: list[Callable[[pd.DataFrame], pd.DataFrame]] = [
        lambda o: check_authorisation(o, approved.post_on_hold),
        lambda o: check_skus(o, lines, order_pos, erp.products),
        lambda o: check_tax_code(o, erp.tax_codes, mappings),
        lambda o: check_tax_treatment(o, mappings),
        check_currency,
        lambda o: check_payment_method(o, mappings),
    ]
    for rule in rules:
        if pending.empty:
            break
        found = rule(pending)
        if not found.empty:
            stopped.append(found)
            pending = pending.drop(index=found.index)

    # Rule 5: pricing.
    pricing = price_orders(
        pending,
        lines,
        order_pos,
        accounts,
        erp.price_lists,
        erp.price_list_items,
        tolerance=mappings.price_tolerance,
        accept=approved.accept,
    )
    if not pricing.failures.empty:
        stopped.append(pricing.failures)
        pending = pending.drop(index=pricing.failures.index)

    # Rule 6 and the postings.
    to_post, to_post_lines = _postings(pending, lines, order_pos, pricing, approved, mappings)
    all_stopped = (
        pd.concat([s for s in stopped if not s.empty])
        if any(not s.empty for s in stopped)
        else pd.DataFrame(columns=["reason_code", "message"])
    )
    return OrderDecisions(
        to_post=to_post,
        to_post_lines=to_post_lines,
        filtered=filtered,
        exceptions=_exception_rows(orders, all_stopped, mapping.account_code),
        already_posted=already_posted.reset_index(drop=True),
        accounts_to_create=mapping.accounts_to_create,
    )


def _postings(
    orders: pd.DataFrame,
    lines: pd.DataFrame,
    order_pos: np.ndarray,
    pricing: Pricing,
    approved: _Overrides,
    mappings: Mappings,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sales orders and lines for the orders every rule let through.

    Lines carry the ERP's prices, or the portal's where ``portal_price`` was approved; the
    headers are the sums of the lines posted, so the ERP's header always equals its lines.
    """
    n_lines = len(lines)
    erp_unit = np.full(n_lines, np.nan)
    erp_net = np.full(n_lines, np.nan)
    erp_tax = np.full(n_lines, np.nan)
    erp_unit[pricing.line_mask] = pricing.erp_unit_price
    erp_net[pricing.line_mask] = pricing.erp_line_net
    erp_tax[pricing.line_mask] = pricing.erp_line_tax

    mask = lines_of(orders, order_pos)
    positions = order_pos[mask]
    by_position = np.zeros(int(positions.max(initial=-1)) + 1, dtype=bool)
    portal_orders = orders.index[approved.accept.reindex(orders.index).eq("portal_price")]
    by_position[portal_orders.to_numpy(dtype="int64")] = True
    portal_priced = by_position[positions]
    unit = np.where(portal_priced, lines["portal_unit_price"].to_numpy()[mask], erp_unit[mask])
    net = np.where(portal_priced, lines["portal_line_net"].to_numpy()[mask], erp_net[mask])
    tax = np.where(portal_priced, lines["portal_line_tax"].to_numpy()[mask], erp_tax[mask])
    post_lines = pd.DataFrame(
        {
            "external_ref": lines["portal_order_id"].to_numpy()[mask],
            "line_no": lines["line_no"].to_numpy(dtype="int64")[mask],
            "sku": lines["sku"].to_numpy()[mask],
            "quantity": lines["quantity"].to_numpy(dtype="int64")[mask],
            "unit_price": unit,
            "line_net": net,
            "tax_amount": tax,
        }
    )

    size = int(max(orders.index.max() if len(orders) else -1, positions.max(initial=-1))) + 1
    index = orders.index.to_numpy(dtype="int64")
    net_total = round_half_up(np.bincount(positions, weights=net, minlength=size)[index], 2)
    tax_total = round_half_up(np.bincount(positions, weights=tax, minlength=size)[index], 2)
    headers = pd.DataFrame(
        {
            "external_ref": orders["portal_order_id"].to_numpy(),
            "account_code": orders["account_code"].to_numpy(),
            "po_number": orders["po_number"].to_numpy(),
            # .array keeps the time-zone-aware values; to_numpy() would box 100k Timestamps.
            "order_date": orders["placed_at"].fillna(orders["updated_at"]).array,
            "status": erp_status(orders, mappings, approved.post_on_hold).to_numpy(),
            "payment_method": orders["payment_method"].to_numpy(),
            "payment_terms": orders["payment_terms"].to_numpy(),
            "tax_code": orders["tax_code"].to_numpy(),
            "currency": orders["currency"].to_numpy(),
            "net_total": net_total,
            "tax_total": tax_total,
            "gross_total": round_half_up(net_total + tax_total, 2),
        }
    )
    return headers[SALES_ORDER_COLUMNS], post_lines[SALES_ORDER_LINE_COLUMNS]
