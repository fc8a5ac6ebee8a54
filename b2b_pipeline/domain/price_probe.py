"""The price probe: ask the portal what an account would pay, before a buyer orders at it.

The price sync pushes, for every customer-specific list, the ERP's answer at every break
(``price_lists.effective_price_list_items``), so the portal's first-list rule and the ERP's
lowest-break rule agree. The probe proves it from the outside: for a sample of accounts it asks
SparkLayer's ``fetch-customer-pricing`` the unit price of their priced SKUs at each break
quantity, and compares the answer with the ERP's own rule (:func:`resolve_unit_prices`, the
function the order check uses). A difference (a price edited by hand in the portal, a list not
yet synced, a list the portal refused) becomes one ``PORTAL_PRICE_DIFFERS`` exception per
account and SKU, before any order is stopped at the price check; a later probe that finds the
two equal resolves it.

The sample, bounded so an hourly run stays a few hundred calls at most:
- every active account with its own (customer-specific) list, where the two rules can differ;
- a rotating share of the other active accounts, chosen by a hash of the account code against
  a window that moves with the date (all of them are probed within ``ceil(1 / share)`` days);
- per account at most ``max_skus`` SKUs: its own list's SKUs first, then its group list's, each
  list's SKUs taken from an offset that moves with the date, at every break quantity of the
  account's lists for that SKU.
Accounts on credit hold or inactive are left out: they cannot order, and are probed again once
released. Pairs whose ERP prices are held back (broken ERP rows) are left out too: the portal
keeps their last good prices on purpose.

Everything here is pure (DataFrames in, DataFrames out); the asset does the I/O.
"""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd

from b2b_pipeline.domain.exceptions import exception_frame
from b2b_pipeline.domain.order_rules import CURRENCY_SYMBOLS
from b2b_pipeline.domain.pricing import resolve_unit_prices

PROBE_ENTITY = "customer_price"
# Prices are compared to the cent: the portal and the ERP both round to 2 dp, so anything over
# half a cent is a real difference (a cent a unit is a pound on an order of a hundred).
PRICE_SLACK = 0.005
# Break quantities named in one message; the payload holds all of them.
MAX_LISTED = 3

PROBE_LINE_COLUMNS = ["account_code", "sku", "quantity"]
COMPARED_COLUMNS = [
    "account_code",
    "sku",
    "quantity",
    "portal_price",
    "portal_error",
    "erp_price",
    "differs",
]


def _unit_interval(keys: pd.Series, salt: str) -> np.ndarray:
    """A stable pseudo-random number in [0, 1) per key (same key and salt, same number, on any
    machine and run: pandas' hash has a fixed key)."""
    hashed = pd.util.hash_pandas_object(keys.astype(str) + "|" + salt, index=False)
    return (hashed.to_numpy(dtype="uint64") >> np.uint64(11)).astype("float64") / float(2**53)


def _child_lists(price_lists: pd.DataFrame) -> pd.Series:
    """code -> parent_code of every list on top of another (a customer-specific list)."""
    lists = price_lists.drop_duplicates("code")
    parents = lists.set_index("code")["parent_code"] if "parent_code" in lists else pd.Series()
    return parents[parents.notna() & (parents != parents.index)]


def open_probe_pairs(queue: pd.DataFrame) -> pd.DataFrame:
    """(``account_code``, ``sku``) of every unresolved ``PORTAL_PRICE_DIFFERS`` exception in
    the queue: the probe asks about them again on every run, whatever the day's sample, so each
    one closes as soon as the portal agrees again."""
    if queue.empty:
        return pd.DataFrame(
            {"account_code": pd.Series(dtype=object), "sku": pd.Series(dtype=object)}
        )
    mine = queue[
        (queue["entity"] == PROBE_ENTITY)
        & (queue["reason_code"] == "PORTAL_PRICE_DIFFERS")
        & queue["status"].isin(["open", "approved"])
    ]
    # The key is "ACCOUNT/SKU": an account code has no "/", a SKU may.
    parts = mine["entity_key"].astype(str).str.split("/", n=1, expand=True)
    if parts.empty:
        return open_probe_pairs(queue.iloc[0:0])
    return (
        pd.DataFrame({"account_code": parts[0], "sku": parts[1]})
        .dropna()
        .drop_duplicates()
        .reset_index(drop=True)
    )


def probe_accounts(
    customers: pd.DataFrame,
    price_lists: pd.DataFrame,
    *,
    on: date,
    share: float,
    recheck: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The accounts probed on day ``on``: ``account_code``, ``company_name``,
    ``price_list_code``, ``parent_code`` (None for a group list), ``own_list`` (bool: the account
    has a customer-specific list), ``currency``, ``discount_percentage``.

    ``customers``: the clean ERP customers; ``price_lists``: ``code``, ``parent_code``,
    ``currency``. Every active account not on hold with a customer-specific list, plus ``share``
    (0 to 1) of the others, rotating with the date, plus the accounts of ``recheck``
    (:func:`open_probe_pairs`).
    """
    if not 0 <= share <= 1:
        raise ValueError(f"probe share must be between 0 and 1, not {share}")
    frame = customers.reset_index(drop=True)
    can_order = frame["active"].astype(bool) & ~frame["credit_hold"].astype(bool)
    priced = frame["price_list_code"].notna() & (frame["price_list_code"].astype(str) != "")
    frame = frame[(can_order & priced).to_numpy()].reset_index(drop=True)
    parents = _child_lists(price_lists)
    own_list = frame["price_list_code"].isin(parents.index).to_numpy()
    # The day's window on the unit interval: share wide, moving by share a day, so consecutive
    # days take consecutive slices and every account comes round.
    start = (on.toordinal() * share) % 1.0
    offset = (_unit_interval(frame["account_code"], "probe-account") - start) % 1.0
    chosen = own_list | (offset < share)
    if recheck is not None and len(recheck):
        chosen |= frame["account_code"].isin(recheck["account_code"]).to_numpy()
    frame = frame[chosen].reset_index(drop=True)
    currency = price_lists.drop_duplicates("code").set_index("code")["currency"]
    return pd.DataFrame(
        {
            "account_code": frame["account_code"],
            "company_name": frame["name"] if "name" in frame else frame["account_code"],
            "price_list_code": frame["price_list_code"],
            "parent_code": frame["price_list_code"].map(parents).astype(object),
            "own_list": frame["price_list_code"].isin(parents.index),
            "currency": frame["price_list_code"].map(currency),
            "discount_percentage": frame["discount_percentage"],
        }
    )


def _rotated_take(
    wants: pd.DataFrame, list_skus: pd.DataFrame, quota: np.ndarray, salt: str
) -> pd.DataFrame:
    """Per row of ``wants`` (``account_code``, ``list_code``): ``quota`` SKUs of that list, taken
    from its sorted SKUs at an offset that depends on the account and ``salt`` (the date), so
    successive days cover the whole list. Vectorised: positions are built with numpy."""
    # list_skus is sorted by list: each list's SKUs are one run of rows.
    runs = pd.DataFrame(
        {"list_code": list_skus["price_list_code"], "position": np.arange(len(list_skus))}
    ).groupby("list_code")["position"]
    first = wants["list_code"].map(runs.min()).fillna(0).to_numpy("int64")
    size = wants["list_code"].map(runs.size()).fillna(0).to_numpy("int64")
    take = np.minimum(quota, size).astype("int64")
    offset = (_unit_interval(wants["account_code"], salt) * np.maximum(size, 1)).astype("int64")
    row = np.repeat(np.arange(len(wants)), take)
    within = np.arange(int(take.sum())) - np.repeat(np.cumsum(take) - take, take)
    position = first[row] + (offset[row] + within) % np.maximum(size[row], 1)
    return pd.DataFrame(
        {
            "account_code": wants["account_code"].to_numpy()[row],
            "sku": list_skus["sku"].to_numpy()[position],
        }
    )


def probe_lines(
    accounts: pd.DataFrame,
    items: pd.DataFrame,
    *,
    on: date,
    max_skus: int,
    held_back: pd.DataFrame | None = None,
    recheck: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """What to ask the portal: ``account_code``, ``sku``, ``quantity`` (every break quantity of
    the account's lists for that SKU), for at most ``max_skus`` SKUs per account.

    ``accounts``: :func:`probe_accounts`; ``items``: the clean ERP breaks; ``held_back``:
    (``price_list_code``, ``sku``) pairs left out. An account with its own list takes that list's
    SKUs first, then fills up from its group list. ``recheck`` (``account_code``, ``sku``: open
    differences) is asked on top of the cap, at quantity 1 when the ERP no longer prices it.
    """
    if max_skus < 1:
        raise ValueError(f"max SKUs per account must be at least 1, not {max_skus}")
    breaks = items[["price_list_code", "sku", "min_quantity"]]
    list_skus = (
        breaks[["price_list_code", "sku"]]
        .drop_duplicates()
        .sort_values(["price_list_code", "sku"])
        .reset_index(drop=True)
    )
    salt = on.isoformat()
    first_list = accounts[["account_code", "price_list_code"]].rename(
        columns={"price_list_code": "list_code"}
    )
    first = _rotated_take(first_list, list_skus, np.full(len(accounts), max_skus), salt)
    taken = first.groupby("account_code").size().reindex(accounts["account_code"], fill_value=0)
    has_parent = accounts["parent_code"].notna().to_numpy()
    second_list = accounts.loc[has_parent, ["account_code", "parent_code"]].rename(
        columns={"parent_code": "list_code"}
    )
    room = max_skus - taken.to_numpy()[has_parent]
    second = _rotated_take(second_list, list_skus, np.maximum(room, 0), salt)
    again = (
        recheck[recheck["account_code"].isin(accounts["account_code"])][["account_code", "sku"]]
        if recheck is not None and len(recheck)
        else first.iloc[0:0]
    )
    chosen = pd.concat([first, second, again], ignore_index=True).drop_duplicates()

    # Each chosen SKU at every break quantity of the account's lists.
    account_lists = pd.concat([first_list, second_list], ignore_index=True)
    chosen_lists = chosen.merge(account_lists, on="account_code")
    lines = chosen_lists.merge(
        breaks, left_on=["list_code", "sku"], right_on=["price_list_code", "sku"]
    ).rename(columns={"min_quantity": "quantity"})[PROBE_LINE_COLUMNS]
    if len(again):
        # An open difference on a SKU the ERP no longer prices: ask at 1 (both sides should now
        # have no price; if the portal still has one, it still differs).
        unpriced = again.merge(lines[["account_code", "sku"]], how="left", indicator=True)
        unpriced = unpriced[unpriced["_merge"] == "left_only"]
        lines = pd.concat(
            [lines, unpriced[["account_code", "sku"]].assign(quantity=1)], ignore_index=True
        )
    if held_back is not None and len(held_back):
        held = held_back[["price_list_code", "sku"]].drop_duplicates()
        touched = chosen_lists.merge(
            held, left_on=["list_code", "sku"], right_on=["price_list_code", "sku"]
        )[["account_code", "sku"]].drop_duplicates()
        lines = lines.merge(touched, on=["account_code", "sku"], how="left", indicator=True)
        lines = lines[lines["_merge"] == "left_only"][PROBE_LINE_COLUMNS]
    return (
        lines.drop_duplicates()
        .astype({"quantity": "int64"})
        .sort_values(PROBE_LINE_COLUMNS)
        .reset_index(drop=True)
    )


def compare_prices(
    lines: pd.DataFrame,
    portal_prices: pd.DataFrame,
    *,
    customers: pd.DataFrame,
    price_lists: pd.DataFrame,
    items: pd.DataFrame,
) -> pd.DataFrame:
    """The portal's answer next to the ERP's, per line probed.

    ``lines``: :func:`probe_lines` for the accounts the portal answered for; ``portal_prices``:
    ``account_code``, ``sku``, ``quantity``, ``unit_price`` (float, NaN/None when the portal
    could not price it), ``error``. The ERP side is :func:`resolve_unit_prices` over
    ``customers`` (``account_code``, ``price_list_code``, ``discount_percentage``),
    ``price_lists`` and ``items``: the order check's own rule.

    Returns :data:`COMPARED_COLUMNS`; ``differs`` is True when the two prices are more than half
    a cent apart or only one side has a price.
    """
    if lines.empty:
        return pd.DataFrame({column: pd.Series(dtype=object) for column in COMPARED_COLUMNS})
    erp = resolve_unit_prices(
        lines.assign(line_key=np.arange(len(lines))), customers, price_lists, items
    )
    portal = portal_prices.reindex(columns=[*PROBE_LINE_COLUMNS, "unit_price", "error"])
    portal = portal.astype({"quantity": "int64"}).drop_duplicates(PROBE_LINE_COLUMNS)
    compared = lines.reset_index(drop=True).merge(portal, on=PROBE_LINE_COLUMNS, how="left")
    portal_price = pd.to_numeric(compared["unit_price"], errors="coerce").to_numpy("float64")
    erp_price = erp["erp_unit_price"].to_numpy("float64")
    one_side = np.isnan(portal_price) != np.isnan(erp_price)
    apart = np.abs(portal_price - erp_price) > PRICE_SLACK  # False where either is NaN
    return pd.DataFrame(
        {
            "account_code": compared["account_code"],
            "sku": compared["sku"],
            "quantity": compared["quantity"],
            "portal_price": portal_price,
            "portal_error": compared["error"].astype(object).where(compared["error"].notna(), None),
            "erp_price": erp_price,
            "differs": one_side | apart,
        }
    )


def _money(amount: float, currency: str | None) -> str:
    symbol = CURRENCY_SYMBOLS.get(currency or "")
    return f"{symbol}{amount:,.2f}" if symbol else f"{amount:,.2f} {currency or ''}".strip()


def _describe(row: pd.Series, currency: str | None) -> str:
    quantity = f"{int(row['quantity']):,}"
    if np.isnan(row["portal_price"]):
        why = f" ({row['portal_error']})" if row["portal_error"] else ""
        return (
            f"at {quantity} the portal cannot price it{why}, the ERP charges "
            f"{_money(row['erp_price'], currency)} each"
        )
    if np.isnan(row["erp_price"]):
        return (
            f"at {quantity} the portal would charge {_money(row['portal_price'], currency)} "
            "each, the ERP has no price"
        )
    return (
        f"at {quantity} the portal would charge {_money(row['portal_price'], currency)} each, "
        f"the ERP {_money(row['erp_price'], currency)}"
    )


def probe_exceptions(compared: pd.DataFrame, accounts: pd.DataFrame) -> pd.DataFrame:
    """One ``PORTAL_PRICE_DIFFERS`` exception (PRICING) per account and SKU with a difference.

    ``compared``: :func:`compare_prices`; ``accounts``: :func:`probe_accounts` (names, lists and
    currency for the message). The message names the account, the SKU, the break quantities that
    differ with both prices, and what to do; the payload lists every differing quantity.
    """
    differing = compared[compared["differs"].astype(bool)]
    if differing.empty:
        return exception_frame()
    # account_code -> that account's row, as a dict: one lookup per differing pair.
    about = accounts.drop_duplicates("account_code").set_index("account_code").to_dict("index")
    rows = []
    for (account, sku), group in differing.sort_values("quantity").groupby(
        ["account_code", "sku"], sort=True
    ):  # one row per account and SKU that differs: a handful, not a hot path
        info = about.get(account)
        currency = None if info is None else info["currency"]
        company = account if info is None else info["company_name"]
        lists = ""
        if info is not None:
            parent = info["parent_code"]
            over = f" over {parent}" if isinstance(parent, str) else ""
            lists = f", price list {info['price_list_code']}{over}"
        listed = "; ".join(_describe(row, currency) for _, row in group.head(MAX_LISTED).iterrows())
        extra = len(group) - MAX_LISTED
        more = f"; and at {extra} more quantit{'y' if extra == 1 else 'ies'}" if extra > 0 else ""
        rows.append(
            {
                "entity": PROBE_ENTITY,
                "entity_key": f"{account}/{sku}",
                "account_code": account,
                "reason_code": "PORTAL_PRICE_DIFFERS",
                "message": (
                    f"Account {account} ({company}{lists}), SKU {sku}: {listed}{more}. A buyer "
                    "ordering now would be charged the portal's price and the order stopped at "
                    "the ERP price check. If the portal price was changed by hand, run the "
                    "price sync with full_comparison (or wait for the nightly one) to restore "
                    "the ERP's price; if the portal is right, correct the ERP price list. "
                    "This closes by itself when a later probe finds the prices equal."
                ),
                "payload": json.dumps(
                    {
                        "account_code": account,
                        "sku": sku,
                        "differences": [
                            {
                                "quantity": int(row["quantity"]),
                                "portal_price": None
                                if np.isnan(row["portal_price"])
                                else float(row["portal_price"]),
                                "erp_price": None
                                if np.isnan(row["erp_price"])
                                else float(row["erp_price"]),
                                "portal_error": row["portal_error"],
                            }
                            for _, row in group.iterrows()
                        ],
                    },
                    sort_keys=True,
                ),
            }
        )
    return exception_frame(rows)


def agreeing_keys(compared: pd.DataFrame) -> list[str]:
    """Exception keys (``account/SKU``) probed this run at which the portal and the ERP agree at
    every quantity: their ``PORTAL_PRICE_DIFFERS`` exceptions, if any, are resolved."""
    if compared.empty:
        return []
    per_pair = compared.groupby(["account_code", "sku"])["differs"].any()
    equal = per_pair[~per_pair]
    return [f"{account}/{sku}" for account, sku in equal.index]


def pricing_requests(lines: pd.DataFrame) -> dict[str, list[dict[str, object]]]:
    """The lines to ask ``fetch-customer-pricing`` per account, by account code:
    ``[{"sku", "quantity"}]`` in the order of :func:`probe_lines` (one call per account; the
    client splits at the API's line maximum)."""
    requests: dict[str, list[dict[str, object]]] = {}
    for account, asked in lines.groupby("account_code", sort=True):  # one call per account
        requests[str(account)] = [
            {"sku": sku, "quantity": int(quantity)}
            for sku, quantity in zip(asked["sku"], asked["quantity"], strict=True)
        ]
    return requests


def portal_answers(answers: dict[str, list[dict[str, object]]]) -> pd.DataFrame:
    """The portal's priced lines per account as one frame for :func:`compare_prices`:
    ``account_code``, ``sku``, ``quantity``, ``unit_price``, ``error``."""
    columns = [*PROBE_LINE_COLUMNS, "unit_price", "error"]
    frames = [pd.DataFrame(rows).assign(account_code=account) for account, rows in answers.items()]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True).reindex(columns=columns)
