"""The order rules of DESIGN.md, one small pure function each, in the order they are applied.

Every rule works on a frame of orders still undecided (one row per order, the index identifying
the order in the batch) and returns the orders it stops as ``Failures``: a frame with that same
index, a ``reason_code`` from the exception catalogue and a ``message`` for a finance or
operations reader. :func:`b2b_pipeline.domain.orders.decide_orders` applies them in order and
gives an order the first failure only (one exception per order: fixing it and retrying replays
the later rules).

Rules that look at lines take the batch's lines with ``order_pos``, the position of each line's
order in the frame of orders, and vectorise over all lines at once.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from b2b_pipeline.config.mappings import Mappings
from b2b_pipeline.domain.pricing import line_amounts, resolve_unit_prices

FAILURE_COLUMNS = ["reason_code", "message"]
# Rounding noise allowed on top of the configured tolerance when comparing float money.
FLOAT_SLACK = 1e-6
# Lines or SKUs named in one message; the payload holds the rest.
MAX_LISTED = 10
CURRENCY_SYMBOLS = {"GBP": "£", "EUR": "€", "USD": "$"}
ERP_CUSTOMER_COLUMNS = [
    "account_code", "name", "email", "customer_group", "price_list_code", "discount_percentage",
    "payment_terms", "tax_code", "currency", "credit_limit", "credit_hold", "active",
]  # fmt: skip


# --- shared helpers --------------------------------------------------------------------------


def failures(index: pd.Index, reason_code: str, messages: list[str] | pd.Series) -> pd.DataFrame:
    """Rule failures: one row per stopped order, on the orders' index."""
    return pd.DataFrame(
        {"reason_code": reason_code, "message": list(messages)},
        index=index,
        columns=FAILURE_COLUMNS,
    )


def no_failures() -> pd.DataFrame:
    return pd.DataFrame(columns=FAILURE_COLUMNS)


def money(amount: float, currency: str | None) -> str:
    """£1,234.00 for GBP; 1,234.00 CHF where no symbol is common."""
    symbol = CURRENCY_SYMBOLS.get(currency or "")
    sign = "-" if amount < 0 else ""
    text = f"{abs(amount):,.2f}"
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {currency or ''}".rstrip()


def order_label(orders: pd.DataFrame) -> pd.Series:
    """'Order SL-100042' (the number the buyer sees), or the portal id when there is none."""
    return "Order " + orders["visible_id"].fillna(orders["portal_order_id"]).astype(str)


def lines_of(orders: pd.DataFrame, order_pos: np.ndarray) -> np.ndarray:
    """Mask of the lines that belong to ``orders`` (a boolean lookup, no hashing of ids)."""
    positions = orders.index.to_numpy(dtype="int64")
    size = int(max(positions.max(initial=-1), order_pos.max(initial=-1))) + 1
    wanted = np.zeros(size + 1, dtype=bool)  # the extra last slot is for order_pos == -1
    wanted[positions] = True
    return wanted[np.where(order_pos >= 0, order_pos, size)]


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    more = len(items) - MAX_LISTED
    return f"{shown} and {more} more" if more > 0 else shown


# --- rule 1: live purchase types --------------------------------------------------------------

# Why a purchase of each type is not (yet) an order, in a reader's words.
NOT_LIVE_REASONS = {
    "order": "an order of a type the mapping file does not treat as live",
    "order_unconfirmed": "completed in the portal but not yet confirmed",
    "awaiting_approval": "waiting for approval by another member of the buyer's company",
    "quote": "a quote, not an order (it is posted once the buyer confirms it)",
    "cart": "a cart, not an order",
}
CANCELLED = "cancelled"


def live_orders(orders: pd.DataFrame, live_types: list[str]) -> pd.Series:
    """True for a real, live order: a live purchase type, and not cancelled in the portal.

    Unconfirmed orders, orders awaiting approval, quotes and carts are not orders yet; they are
    recorded as filtered (not exceptions) and posted once, when their type becomes live.
    """
    return orders["type"].isin(live_types) & (orders["fulfilment_status"] != CANCELLED)


def filtered_frame(orders: pd.DataFrame, live_types: list[str]) -> pd.DataFrame:
    """portal_order_id, type, reason for the purchases that are not live orders."""
    live = ", ".join(live_types)
    reason = (
        orders["type"]
        .map(NOT_LIVE_REASONS)
        .fillna("type " + orders["type"].astype(str) + " is not a live type (" + live + ")")
    )
    reason = reason.where(orders["fulfilment_status"] != CANCELLED, "cancelled in the portal")
    return pd.DataFrame(
        {
            "portal_order_id": orders["portal_order_id"].to_numpy(),
            "type": orders["type"].to_numpy(),
            "reason": reason.to_numpy(),
        }
    )


# --- rule 2: account mapping ------------------------------------------------------------------


def auto_account_code(company_name: str | None, customer_id: str) -> str:
    """A deterministic ERP account code for an auto-created account: AUTO-ACMELTD-1A2B3C.

    Company name letters and digits (first 10) plus 6 hex digits of a hash of the portal
    customer id: the same company always gets the same code, so a rerun finds the account it
    created instead of creating a second one.
    """
    letters = re.sub(r"[^A-Z0-9]", "", (company_name or "").upper())[:10] or "CUSTOMER"
    digest = hashlib.sha256(str(customer_id).encode()).hexdigest()[:6].upper()
    return f"AUTO-{letters}-{digest}"


@dataclass(frozen=True)
class AccountMapping:
    """Rule 2's result: each order's ERP account (or its failure) and the accounts to create."""

    account_code: pd.Series  # on the orders' index; None where the order failed
    failures: pd.DataFrame
    accounts_to_create: pd.DataFrame  # ERP customer records (erp_customers columns)


def map_accounts(
    orders: pd.DataFrame,
    customers: pd.DataFrame,
    price_lists: pd.DataFrame,
    mappings: Mappings,
    account_override: pd.Series,
) -> AccountMapping:
    """The ERP account of each order: an approved override, else the portal's accounting_id.

    No accounting_id: ``UNMAPPED_ACCOUNT``, or under ``auto_create`` an account built from the
    mapping's defaults (its code derived from the company, see :func:`auto_account_code`). An
    accounting_id that names no ERP account is ``UNKNOWN_ACCOUNT`` under either policy: it is
    most likely a typo, and creating an account for it would duplicate a customer.
    """
    code = account_override.reindex(orders.index).fillna(orders["accounting_id"])
    known = code.isin(customers["account_code"])
    unmapped = code.isna()
    to_create = pd.DataFrame(columns=ERP_CUSTOMER_COLUMNS)

    defaults = mappings.auto_create_defaults
    if (
        mappings.unmapped_customer_policy == "auto_create"
        and defaults is not None
        and unmapped.any()
    ):
        new = orders.loc[unmapped, ["company_name", "customer_sparklayer_id", "currency"]]
        new_codes = [
            auto_account_code(name, customer)
            for name, customer in zip(
                new["company_name"], new["customer_sparklayer_id"], strict=True
            )
        ]
        code = code.copy()
        code.loc[new.index] = new_codes
        list_currency = price_lists.drop_duplicates("code").set_index("code")["currency"]
        records = pd.DataFrame(
            {
                "account_code": new_codes,
                "name": new["company_name"]
                .fillna("Portal customer " + new["customer_sparklayer_id"].astype(str))
                .to_numpy(),
                "email": None,
                "customer_group": defaults.customer_group,
                "price_list_code": defaults.price_list_code,
                "discount_percentage": 0.0,
                "payment_terms": defaults.payment_terms,
                "tax_code": defaults.tax_code,
                "currency": list_currency.get(defaults.price_list_code, None),
                "credit_limit": float(defaults.credit_limit),
                "credit_hold": False,
                "active": True,
            }
        )
        records["currency"] = records["currency"].fillna(new["currency"].reset_index(drop=True))
        # An account an earlier run created is used, not created again.
        to_create = (
            records[~records["account_code"].isin(customers["account_code"])]
            .drop_duplicates("account_code")
            .reset_index(drop=True)
        )
        unmapped = pd.Series(False, index=orders.index)
        known = code.isin(customers["account_code"]) | code.isin(to_create["account_code"])

    label = order_label(orders)
    company = orders["company_name"].fillna("an unnamed company")
    unmapped_index = orders.index[unmapped]
    unknown_index = orders.index[~unmapped & ~known]
    found = pd.concat(
        [
            failures(
                unmapped_index,
                "UNMAPPED_ACCOUNT",
                label[unmapped_index]
                + " from "
                + company[unmapped_index]
                + " was not posted: this portal company has no ERP account (its accounting_id "
                "is empty). Approve it with the ERP account code for this company, or create "
                "the ERP account first and retry.",
            ),
            failures(
                unknown_index,
                "UNKNOWN_ACCOUNT",
                label[unknown_index]
                + " from "
                + company[unknown_index]
                + " was not posted: its accounting_id '"
                + code[unknown_index].astype(str)
                + "' names no ERP account. Correct the accounting_id in the portal, or approve "
                "it with the right ERP account code.",
            ),
        ]
    )
    return AccountMapping(
        account_code=code.where(known, None), failures=found, accounts_to_create=to_create
    )


# --- rule 3: authorisation --------------------------------------------------------------------


def check_authorisation(orders: pd.DataFrame, post_on_hold: pd.Series) -> pd.DataFrame:
    """Inactive account: ``ACCOUNT_INACTIVE``; credit hold: ``ACCOUNT_ON_HOLD``.

    An approved ``post_on_hold`` override lets a held account's order through (it is posted
    ``ON_HOLD``, so the warehouse does not pick it); nothing overrides an inactive account.
    """
    who = order_label(orders) + " for " + orders["account_code"].astype(str)
    inactive = ~orders["active"].astype(bool)
    held = (
        orders["credit_hold"].astype(bool)
        & ~inactive
        & ~post_on_hold.reindex(orders.index, fill_value=False).astype(bool)
    )
    totals = [
        money(amount, currency)
        for amount, currency in zip(
            orders.loc[held, "portal_gross"], orders.loc[held, "currency"], strict=True
        )
    ]
    return pd.concat(
        [
            failures(
                orders.index[inactive],
                "ACCOUNT_INACTIVE",
                who[inactive]
                + " was not posted: the ERP account is inactive. Reactivate the account in "
                "the ERP and retry, or ignore the order.",
            ),
            failures(
                orders.index[held],
                "ACCOUNT_ON_HOLD",
                who[held]
                + ", total "
                + pd.Series(totals, index=orders.index[held], dtype=object)
                + ", was not posted: the ERP account is on credit hold. Release the hold in the "
                "ERP and retry, approve it to post the order ON_HOLD, or ignore it and tell the "
                "customer.",
            ),
        ]
    )


# --- rule 4: catalogue, tax, currency, payment method -----------------------------------------


def check_skus(
    orders: pd.DataFrame,
    lines: pd.DataFrame,
    order_pos: np.ndarray,
    products: pd.DataFrame,
) -> pd.DataFrame:
    """Every SKU must be an active ERP product: else ``UNKNOWN_SKU`` naming the SKUs."""
    catalogue = products.drop_duplicates("sku")
    where = pd.Index(catalogue["sku"]).get_indexer(lines["sku"])
    active = catalogue["active"].astype(bool).to_numpy()
    sellable = (where >= 0) & active[np.maximum(where, 0)] if len(catalogue) else where >= 0
    bad = lines_of(orders, order_pos) & ~sellable
    if not bad.any():
        return no_failures()
    offending = pd.DataFrame(
        {
            "order": order_pos[bad],
            "text": lines["sku"].to_numpy()[bad].astype(str)
            + np.where(where[bad] >= 0, " (inactive)", " (unknown)"),
        }
    ).drop_duplicates()
    listed = offending.groupby("order")["text"].agg(lambda texts: _listed(sorted(texts)))
    index = pd.Index(listed.index)
    who = order_label(orders.loc[index]) + " for " + orders.loc[index, "account_code"].astype(str)
    return failures(
        index,
        "UNKNOWN_SKU",
        who
        + " contains products the ERP cannot sell: "
        + listed
        + ". Create or reactivate them in the ERP (or correct the SKU in the portal), then "
        "retry.",
    )


def check_tax_code(
    orders: pd.DataFrame, tax_codes: pd.DataFrame, mappings: Mappings
) -> pd.DataFrame:
    """The account's ERP tax code must be mapped and have a rate: else ``UNMAPPED_TAX_CODE``."""
    usable = orders["tax_code"].isin(list(mappings.tax_codes)) & orders["tax_code"].isin(
        tax_codes["code"]
    )
    bad = orders[~usable]
    return failures(
        bad.index,
        "UNMAPPED_TAX_CODE",
        order_label(bad)
        + " for "
        + bad["account_code"].astype(str)
        + ": the account's ERP tax code '"
        + bad["tax_code"].astype(str)
        + "' has no tax treatment in the mapping file or no rate in the ERP. Add it to "
        "tax_codes in the mapping file (and to the ERP tax codes), then retry.",
    )


def check_tax_treatment(orders: pd.DataFrame, mappings: Mappings) -> pd.DataFrame:
    """The portal's tax exemption must match the ERP tax code's: else ``TAX_TREATMENT_MISMATCH``."""
    erp_exempt = orders["tax_code"].map(
        {code: treatment.tax_exempt for code, treatment in mappings.tax_codes.items()}
    )
    bad = orders[orders["tax_exempt"].astype(bool) != erp_exempt.astype(bool)]
    portal_says = np.where(bad["tax_exempt"].astype(bool), "tax exempt", "taxable")
    erp_says = np.where(bad["tax_exempt"].astype(bool), "taxable", "tax exempt")
    return failures(
        bad.index,
        "TAX_TREATMENT_MISMATCH",
        order_label(bad)
        + " for "
        + bad["account_code"].astype(str)
        + ": the portal treated the order as "
        + portal_says
        + " but the ERP tax code "
        + bad["tax_code"].astype(str)
        + " is "
        + erp_says
        + ". Fix the account's tax code in the ERP or its tax exemption in the portal, "
        "then retry.",
    )


def check_currency(orders: pd.DataFrame) -> pd.DataFrame:
    """The order's currency must be the account's: else ``CURRENCY_MISMATCH``."""
    bad = orders[orders["currency"] != orders["account_currency"]]
    return failures(
        bad.index,
        "CURRENCY_MISMATCH",
        order_label(bad)
        + " for "
        + bad["account_code"].astype(str)
        + " is in "
        + bad["currency"].astype(str)
        + " but the ERP account trades in "
        + bad["account_currency"].astype(str)
        + ". Correct the account or the order, then retry.",
    )


def check_payment_method(orders: pd.DataFrame, mappings: Mappings) -> pd.DataFrame:
    """The payment method must map to an ERP status: else ``UNMAPPED_PAYMENT_METHOD``.

    No payment method at all (the portal may send ``""``) is unmapped too, never a default. A
    method mapped to ``PAID`` whose order is not paid (paid at checkout, or by transactions that
    cover the total) is stopped: posting it PAID would release unpaid goods, and guessing another
    status is what the contract forbids.
    """
    status = orders["payment_method"].map(mappings.payment_methods)
    unmapped = status.isna()
    unpaid = (status == "PAID") & ~orders["paid"].eq(True)
    who = order_label(orders) + " for " + orders["account_code"].astype(str)
    method = orders["payment_method"].fillna("(none)").astype(str)
    return pd.concat(
        [
            failures(
                orders.index[unmapped],
                "UNMAPPED_PAYMENT_METHOD",
                who[unmapped]
                + " uses the payment method '"
                + method[unmapped]
                + "', which has no ERP status in the mapping file. Add it to payment_methods "
                "in the mapping file, then retry.",
            ),
            failures(
                orders.index[unpaid],
                "UNMAPPED_PAYMENT_METHOD",
                who[unpaid]
                + " was paid by '"
                + method[unpaid]
                + "' but no payment covering its total is recorded in the portal, so it cannot "
                "be posted as PAID. Check the payment in the portal, then retry.",
            ),
        ]
    )


# --- rule 5: pricing --------------------------------------------------------------------------


@dataclass(frozen=True)
class Pricing:
    """Rule 5's result: the price of every line in scope and the orders it stops."""

    line_mask: np.ndarray  # lines of the orders that were priced
    erp_unit_price: np.ndarray  # per line in the mask
    erp_line_net: np.ndarray
    erp_line_tax: np.ndarray
    failures: pd.DataFrame


def price_orders(
    orders: pd.DataFrame,
    lines: pd.DataFrame,
    order_pos: np.ndarray,
    accounts: pd.DataFrame,
    price_lists: pd.DataFrame,
    price_list_items: pd.DataFrame,
    *,
    tolerance: float,
    accept: pd.Series,
) -> Pricing:
    """The ERP's own calculation of each order, compared with the portal's.

    ERP unit price by :func:`resolve_unit_prices` for the order's account; line tax at the
    account tax code's rate (``orders.tax_rate``), rounded per line. An order stops with
    ``NO_ERP_PRICE`` when a line has no ERP price, and with ``PRICE_MISMATCH`` when a line's unit
    price or the checkout total differs from the ERP's by more than ``tolerance``. An approved
    ``accept`` of ``erp_price`` or ``portal_price`` lets the mismatch through (the portal price
    also covers a missing ERP price).
    """
    positions = orders.index.to_numpy(dtype="int64")
    mask = lines_of(orders, order_pos)
    scoped_pos = order_pos[mask]
    account_by_pos = pd.Series(orders["account_code"].to_numpy(), index=positions)
    quantity = lines["quantity"].to_numpy()[mask]
    resolved = resolve_unit_prices(
        pd.DataFrame(
            {
                "line_key": np.flatnonzero(mask),
                "account_code": account_by_pos.reindex(scoped_pos).to_numpy(),
                "sku": lines["sku"].to_numpy()[mask],
                "quantity": quantity,
            }
        ),
        accounts,
        price_lists,
        price_list_items,
    )
    erp_unit = resolved["erp_unit_price"].to_numpy()
    rate = pd.Series(orders["tax_rate"].to_numpy(), index=positions).reindex(scoped_pos).to_numpy()
    line_net, line_tax = line_amounts(erp_unit, quantity, rate)

    # Order totals: bincount over the order positions is a grouped sum without a groupby.
    size = int(max(positions.max(initial=-1), scoped_pos.max(initial=-1))) + 1
    erp_net = np.bincount(scoped_pos, weights=np.nan_to_num(line_net), minlength=size)[positions]
    erp_tax = np.bincount(scoped_pos, weights=np.nan_to_num(line_tax), minlength=size)[positions]
    unpriced = np.bincount(scoped_pos, weights=np.isnan(erp_unit), minlength=size)[positions] > 0
    portal_unit = lines["portal_unit_price"].to_numpy()[mask]
    line_differs = ~np.isnan(erp_unit) & (np.abs(portal_unit - erp_unit) > tolerance + FLOAT_SLACK)
    lines_differ = np.bincount(scoped_pos, weights=line_differs, minlength=size)[positions] > 0
    erp_gross = erp_net + erp_tax
    portal_gross = orders["portal_gross"].to_numpy()
    total_differs = np.abs(portal_gross - erp_gross) > tolerance + FLOAT_SLACK

    accepted = accept.reindex(orders.index).to_numpy()
    no_price = unpriced & (accepted != "portal_price")
    mismatch = (
        ~unpriced
        & (lines_differ | total_differs)
        & ~np.isin(accepted, ["erp_price", "portal_price"])
    )
    found = no_failures()
    if no_price.any() or mismatch.any():
        line_view = pd.DataFrame(
            {
                "order": scoped_pos,
                "sku": lines["sku"].to_numpy()[mask],
                "quantity": quantity,
                "portal": portal_unit,
                "erp": erp_unit,
                "differs": line_differs,
            }
        )
        found = pd.concat(
            [
                _no_price_failures(orders[no_price], line_view, accounts),
                _mismatch_failures(orders[mismatch], line_view, erp_gross[mismatch]),
            ]
        )
    return Pricing(
        line_mask=mask,
        erp_unit_price=erp_unit,
        erp_line_net=line_net,
        erp_line_tax=line_tax,
        failures=found,
    )


def _no_price_failures(
    orders: pd.DataFrame, line_view: pd.DataFrame, accounts: pd.DataFrame
) -> pd.DataFrame:
    if orders.empty:
        return no_failures()
    missing = line_view[line_view["order"].isin(orders.index) & line_view["erp"].isna()]
    text = missing["sku"].astype(str) + " × " + missing["quantity"].astype(str)
    listed = text.groupby(missing["order"]).agg(lambda t: _listed(list(t)))
    price_list = orders["account_code"].map(
        accounts.drop_duplicates("account_code").set_index("account_code")["price_list_code"]
    )
    return failures(
        orders.index,
        "NO_ERP_PRICE",
        order_label(orders)
        + " for "
        + orders["account_code"].astype(str)
        + ": the ERP has no price for "
        + listed.reindex(orders.index)
        + " on the account's price list "
        + price_list.fillna("(none)").astype(str)
        + " or its parent list. Add the SKU to the account's ERP price list, then retry; or "
        "approve it with the portal price.",
    )


def _mismatch_failures(
    orders: pd.DataFrame, line_view: pd.DataFrame, erp_gross: np.ndarray
) -> pd.DataFrame:
    """PRICE_MISMATCH messages: both totals, the difference, and the lines that differ."""
    if orders.empty:
        return no_failures()
    differing = line_view[line_view["order"].isin(orders.index) & line_view["differs"]]
    text = (
        differing["sku"].astype(str)
        + " × "
        + differing["quantity"].astype(str)
        + " portal "
        + differing["portal"].map("{:.2f}".format)
        + " vs ERP "
        + differing["erp"].map("{:.2f}".format)
    )
    listed = text.groupby(differing["order"]).agg(lambda t: _listed(list(t)))
    messages = []
    for position, label, account, currency, portal_gross, erp_total in zip(
        orders.index,
        order_label(orders),
        orders["account_code"],
        orders["currency"],
        orders["portal_gross"],
        erp_gross,
        strict=True,
    ):
        lines_text = (
            f"Lines that differ: {listed[position]}."
            if position in listed.index
            else "No line price differs; the totals differ (tax or rounding)."
        )
        messages.append(
            f"{label} for {account}: portal total {money(portal_gross, currency)}, ERP "
            f"calculates {money(erp_total, currency)} (difference "
            f"{money(abs(portal_gross - erp_total), currency)}). {lines_text} Approve with the "
            "ERP or the portal price, or fix the price list and retry."
        )
    return failures(orders.index, "PRICE_MISMATCH", messages)


# --- rule 6: payment -> ERP status ------------------------------------------------------------


def erp_status(orders: pd.DataFrame, mappings: Mappings, post_on_hold: pd.Series) -> pd.Series:
    """The ERP sales-order status: the payment method's mapping (never PENDING_PAYMENT, the
    mappings refuse it), or ON_HOLD for a held account's order posted by an approved override."""
    status = orders["payment_method"].map(mappings.payment_methods)
    on_hold = orders["credit_hold"].astype(bool) & post_on_hold.reindex(
        orders.index, fill_value=False
    ).astype(bool)
    return status.where(~on_hold, "ON_HOLD")
