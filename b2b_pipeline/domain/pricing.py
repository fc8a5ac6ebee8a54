"""THE price rule: what an ERP account pays for a line (docs/architecture.md, "Price resolution").

An account's price for a SKU at a quantity is the **lowest** break price whose ``min_quantity`` the
quantity reaches, over the account's ERP price list and, when that list has a ``parent_code`` (a
customer-specific list on top of a group list), the parent list; then minus the account's
``discount_percentage``, rounded to 2 decimals half-up. "Lowest" rather than "the largest break
reached" is the ERP's rule: a customer-specific list only wins where it is cheaper. SparkLayer
prices differently (contract v2 §3: the first of the customer's lists that prices the SKU, at its
largest break reached), so the price sync pushes each customer-specific list as its *effective*
breaks, this rule's answer at every break quantity (``domain/price_lists.py``), and the price
probe (``domain/price_probe.py``) asks the portal to prove the two agree.

Money is float64 here (architecture.md, "Money"): rounding is done half-up on the decimal value
(see :func:`round_half_up`), so the results equal a ``Decimal`` computation to the cent.

The resolution is one DuckDB query over the frames, registered in memory (no files). It was timed
against a DuckDB ``ASOF JOIN`` and ``pandas.merge_asof`` on a million lines and 1.3 M price rows
(``benchmarks/bench_order_validation.py``): an equi-join on (list, SKU) filtered on
``min_quantity <= quantity`` and reduced with ``min`` took about half the time of either, because
a line meets only a handful of breaks per list; it also computes "lowest" directly, where an
as-of join finds the largest break reached and would need a running minimum to be exact.
"""

from __future__ import annotations

from typing import TypeVar, overload

import numpy as np
import pandas as pd

from b2b_pipeline.duckdb_instance import scratch

RESOLVED_PRICE_COLUMNS = ["line_key", "list_price", "source_list", "erp_unit_price"]

ArrayLike = TypeVar("ArrayLike", pd.Series, np.ndarray)


@overload
def round_half_up(values: float, decimals: int = 2) -> float: ...
@overload
def round_half_up(values: ArrayLike, decimals: int = 2) -> ArrayLike: ...
def round_half_up(values, decimals: int = 2):
    """Round money half away from zero, as ``Decimal.quantize(ROUND_HALF_UP)`` would.

    Vectorised over a Series or an array (a scalar in, a float out). ``numpy.round`` rounds half
    to even, and a naive ``floor(x * 100 + 0.5)`` fails on values such as 1.005, whose binary
    form is 1.00499999…; scaling and then snapping to 6 decimals first removes that
    representation error (prices carry at most 4 decimals in the ERP), so a true half rounds up.
    NaN stays NaN.
    """
    scale = 10.0**decimals
    array = np.asarray(values, dtype="float64")
    scaled = np.round(np.abs(array) * scale, 6)
    rounded = np.copysign(np.floor(scaled + 0.5) / scale, array)
    if isinstance(values, pd.Series):
        return pd.Series(rounded, index=values.index, name=values.name)
    if np.ndim(values) == 0:
        return float(rounded)
    return rounded


def line_amounts(
    unit_price: ArrayLike, quantity: ArrayLike, tax_rate: ArrayLike | float
) -> tuple[ArrayLike, ArrayLike]:
    """A line's net and tax: net = unit × quantity, tax = round(net × rate / 100, 2) per line.

    ``tax_rate`` is a percentage (20.0 means 20 %). Tax is rounded per line, never on the order
    total (architecture.md, "Line tax"), so the ERP's lines add up to its totals.
    """
    net = round_half_up(np.asarray(unit_price, dtype="float64") * np.asarray(quantity), 2)
    tax = round_half_up(net * np.asarray(tax_rate, dtype="float64") / 100.0, 2)
    if isinstance(unit_price, pd.Series):
        return (
            pd.Series(net, index=unit_price.index, name="line_net"),
            pd.Series(tax, index=unit_price.index, name="tax_amount"),
        )
    return net, tax


# Each line meets its account once (materialised: both branches below read it), then becomes one
# candidate row per list: the account's own, and its parent when there is one. The left join
# keeps lines with no break at all (their price stays NULL).
_RESOLVE_SQL = """
WITH line_accounts AS MATERIALIZED (
    SELECT l.line_pos, a.account_pos, l.sku, l.quantity, a.price_list_code, a.parent_code
    FROM lines AS l JOIN accounts AS a USING (account_code)
),
candidates AS (
    SELECT line_pos, account_pos, sku, quantity, price_list_code AS list_code,
           FALSE AS via_parent
    FROM line_accounts
    UNION ALL
    SELECT line_pos, account_pos, sku, quantity, parent_code AS list_code, TRUE AS via_parent
    FROM line_accounts
    WHERE parent_code IS NOT NULL
)
SELECT c.line_pos,
       any_value(c.account_pos) AS account_pos,
       min(i.unit_price) FILTER (WHERE NOT c.via_parent) AS own_price,
       min(i.unit_price) FILTER (WHERE c.via_parent) AS parent_price
FROM candidates AS c
LEFT JOIN items AS i
       ON i.price_list_code = c.list_code
      AND i.sku = c.sku
      AND i.min_quantity <= c.quantity
GROUP BY c.line_pos
"""


def _account_lists(accounts: pd.DataFrame, price_lists: pd.DataFrame) -> pd.DataFrame:
    """Per account: its list, the list's parent and its discount (one row per account code)."""
    parents = price_lists.drop_duplicates("code")[["code", "parent_code"]]
    frame = (
        accounts.drop_duplicates("account_code")[
            ["account_code", "price_list_code", "discount_percentage"]
        ]
        .merge(parents, how="left", left_on="price_list_code", right_on="code")
        .drop(columns="code")
        .reset_index(drop=True)
    )
    frame["discount_percentage"] = pd.to_numeric(
        frame["discount_percentage"], errors="coerce"
    ).fillna(0.0)
    # A parent equal to the list itself would only count the list twice.
    frame.loc[frame["parent_code"] == frame["price_list_code"], "parent_code"] = None
    frame["account_pos"] = np.arange(len(frame), dtype="int64")
    return frame


def resolve_unit_prices(
    lines: pd.DataFrame,
    accounts: pd.DataFrame,
    price_lists: pd.DataFrame,
    items: pd.DataFrame,
) -> pd.DataFrame:
    """The ERP's price for each order line, by the one price rule.

    Args:
        lines: ``line_key``, ``account_code``, ``sku``, ``quantity``.
        accounts: ``account_code``, ``price_list_code``, ``discount_percentage``.
        price_lists: ``code``, ``parent_code``, ``currency``.
        items: ``price_list_code``, ``sku``, ``min_quantity``, ``unit_price``.

    Returns:
        One row per input line, in input order and with the input's index: ``line_key``,
        ``list_price`` (lowest break reached, before discount), ``source_list`` (the list it came
        from) and ``erp_unit_price`` (after discount, 2 dp half-up). Prices are NaN and
        ``source_list`` is None where the account is unknown or neither list prices the SKU at
        that quantity.
    """
    n_lines = len(lines)
    own_price = np.full(n_lines, np.nan)
    parent_price = np.full(n_lines, np.nan)
    account_pos = np.full(n_lines, -1, dtype="int64")
    account_lists = _account_lists(accounts, price_lists)

    if n_lines and len(account_lists) and len(items):
        # Only the columns the query reads, with numbers as numbers: an ERP read may hand over
        # Decimal objects, which DuckDB would scan one Python object at a time.
        probe = pd.DataFrame(
            {
                "line_pos": np.arange(n_lines, dtype="int64"),
                "account_code": lines["account_code"].to_numpy(),
                "sku": lines["sku"].to_numpy(),
                "quantity": pd.to_numeric(lines["quantity"]).to_numpy(),
            }
        )
        breaks = pd.DataFrame(
            {
                "price_list_code": items["price_list_code"].to_numpy(),
                "sku": items["sku"].to_numpy(),
                "min_quantity": pd.to_numeric(items["min_quantity"]).to_numpy(),
                "unit_price": items["unit_price"].to_numpy(dtype="float64"),
            }
        )
        with scratch() as connection:
            connection.register("lines", probe)
            connection.register(
                "accounts",
                account_lists[["account_code", "price_list_code", "parent_code", "account_pos"]],
            )
            connection.register("items", breaks)
            found = connection.sql(_RESOLVE_SQL).fetchnumpy()
        # The query returns lines in no particular order: scatter back by position.
        positions = np.asarray(found["line_pos"], dtype="int64")
        own_price[positions] = _as_float(found["own_price"])
        parent_price[positions] = _as_float(found["parent_price"])
        account_pos[positions] = np.asarray(found["account_pos"], dtype="int64")

    list_price = np.fmin(own_price, parent_price)
    known = account_pos >= 0
    source_list = _source_lists(account_lists, account_pos, own_price, parent_price)
    discount = np.zeros(n_lines)
    discount[known] = account_lists["discount_percentage"].to_numpy(dtype="float64")[
        account_pos[known]
    ]
    erp_unit_price = round_half_up(list_price * (1.0 - discount / 100.0), 2)
    return pd.DataFrame(
        {
            "line_key": lines["line_key"].to_numpy(),
            "list_price": list_price,
            "source_list": source_list,
            "erp_unit_price": erp_unit_price,
        },
        index=lines.index,
    )


def _source_lists(
    account_lists: pd.DataFrame,
    account_pos: np.ndarray,
    own_price: np.ndarray,
    parent_price: np.ndarray,
) -> pd.Categorical:
    """The list each line's price came from (own list on a tie), as a categorical.

    Built from integer codes: a million lines name a few thousand lists, so no string is copied
    per line.
    """
    own_lists, parent_lists = account_lists["price_list_code"], account_lists["parent_code"]
    codes, names = pd.factorize(pd.concat([own_lists, parent_lists], ignore_index=True))
    own_code, parent_code = codes[: len(own_lists)], codes[len(own_lists) :]
    from_parent = np.isnan(own_price) | (parent_price < own_price)
    safe_pos = np.maximum(account_pos, 0)
    line_codes = (
        np.where(from_parent, parent_code[safe_pos], own_code[safe_pos])
        if len(codes)
        else np.full(len(account_pos), -1)
    )
    priced = (account_pos >= 0) & ~(np.isnan(own_price) & np.isnan(parent_price))
    return pd.Categorical.from_codes(np.where(priced, line_codes, -1), categories=names)


def _as_float(values: np.ndarray) -> np.ndarray:
    """A DuckDB numpy column as float64 with NaN for NULL (it may arrive as a masked array)."""
    if isinstance(values, np.ma.MaskedArray):
        # np.ma.filled, not .filled(): numpy's stubs type MaskedArray.astype as a plain ndarray.
        return np.ma.filled(values.astype("float64"), np.nan)
    return np.asarray(values, dtype="float64")
