"""Deterministic demo data for the reference ERP, shaped like a real B2B merchant.

A British hardware merchant with trade, retail, wholesale and export customers; a group price
list per customer group (quantity breaks 1/10/50/100) and customer-specific lists that override
a few SKUs on top of their group list; VAT codes; stock in two warehouses. The first accounts
are hand-written so demos and tests can name them (:data:`NOTABLE_ACCOUNTS`); the rest are
generated from a seeded RNG. Timestamps are fixed, so the same arguments always give the same
tables, byte for byte, and seeding twice changes nothing.

The default size is a demo (40 customers, 200 SKUs); ``customers``, ``skus`` and ``price_rows``
scale it to benchmark sizes (thousands of customers, tens of thousands of SKUs, a million price
rows), built with numpy and written in bulk.

Pricing is consistent by construction: every group list prices every SKU at every break, and
every customer-specific list has its group list as parent, so every account's lists price every
SKU (docs/architecture.md, "Price resolution").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from b2b_pipeline.demo.names import (
    CATALOGUE,
    UK_LEGAL_FORMS,
    email_domain,
    eu_company_name,
    uk_company_name,
)

if TYPE_CHECKING:
    from b2b_pipeline.connectors.erp.gateway import ErpGateway

# Every demo timestamp is this instant or before it: seeding twice gives identical rows.
SEED_TIME = pd.Timestamp("2025-01-06 06:00:00", tz="UTC")

# ERP customer group -> (group price list, its name, currency, price factor on the list price).
GROUP_PRICE_LISTS: dict[str, tuple[str, str, str, float]] = {
    "trade": ("PL-TRADE-GBP", "Trade prices (GBP)", "GBP", 0.85),
    "retail": ("PL-RETAIL-GBP", "Retail prices (GBP)", "GBP", 1.00),
    "wholesale": ("PL-WHOLESALE-GBP", "Wholesale prices (GBP)", "GBP", 0.72),
    # EUR list: list price converted at about 1.17 EUR/GBP, at a distributor's 16 % off.
    "export": ("PL-EXPORT-EUR", "Export prices (EUR)", "EUR", 0.98),
}
GROUPS = tuple(GROUP_PRICE_LISTS)
# Quantity breaks every list uses, and the price factor at each (strictly decreasing).
BREAK_QUANTITIES = (1, 10, 50, 100)
BREAK_FACTORS = (1.00, 0.95, 0.90, 0.85)
# A customer-specific list sells the SKUs it overrides this much below the group list.
CUSTOMER_LIST_FACTOR = 0.90
# SKUs a customer-specific list overrides at the default size.
DEFAULT_OVERRIDDEN_SKUS = 8
# Share of generated (not hand-written) customers in each group.
GROUP_SHARES = {"trade": 0.40, "retail": 0.25, "wholesale": 0.20, "export": 0.15}

TAX_CODES = pd.DataFrame(
    {
        "code": ["STANDARD", "ZERO", "EXEMPT", "REVERSE_CHARGE"],
        "description": [
            "Standard rate VAT",
            "Zero-rated VAT",
            "Exempt from VAT (e.g. a registered charity)",
            "Reverse charge (VAT-registered EU business)",
        ],
        "rate": [20.0, 0.0, 0.0, 0.0],
    }
)
WAREHOUSES = pd.DataFrame(
    {
        "code": ["MAIN", "NORTH"],
        "name": ["Main warehouse, Leeds", "North depot, Newcastle"],
    }
)


@dataclass(frozen=True)
class _FeaturedAccount:
    """A hand-written account at a fixed position, so a demo or a test can name it."""

    role: str
    name: str
    group: str
    tax_code: str = "STANDARD"
    discount_percentage: float = 0.0
    customer_prices: bool = False  # has its own price list on top of the group list
    credit_hold: bool = False
    active: bool = True


# CUST0001, CUST0002, ... in this order.
_FEATURED = (
    _FeaturedAccount("trade", "Harrow Building Supplies Ltd", "trade"),
    _FeaturedAccount("retail", "Pennine Home & Garden Ltd", "retail"),
    _FeaturedAccount("wholesale", "Northern Fixings Wholesale Ltd", "wholesale"),
    _FeaturedAccount("export_reverse_charge", "Van Dijk Techniek B.V.", "export", "REVERSE_CHARGE"),
    _FeaturedAccount("customer_prices", "Thames Valley Joinery Ltd", "trade", customer_prices=True),
    _FeaturedAccount("credit_hold", "Mercer & Sons Roofing Ltd", "trade", credit_hold=True),
    _FeaturedAccount("inactive", "Ashby Interiors Ltd", "retail", active=False),
    _FeaturedAccount("tax_exempt", "St Aidan's Hospice Trust", "retail", "EXEMPT"),
    _FeaturedAccount(
        "customer_prices_with_discount",
        "Midlands Trade Distribution plc",
        "wholesale",
        discount_percentage=2.5,
        customer_prices=True,
    ),
    _FeaturedAccount(
        "discount", "Kingsway Electrical Contractors Ltd", "trade", discount_percentage=5.0
    ),
    _FeaturedAccount(
        "export_reverse_charge_2", "Rhein Industrietechnik GmbH", "export", "REVERSE_CHARGE"
    ),
)


def account_code(index: int) -> str:
    """The account code of the ``index``-th customer (0-based): CUST0001, CUST0002, ..."""
    return f"CUST{index + 1:04d}"


def customer_price_list_code(account: str) -> str:
    """The code of an account's own price list."""
    return f"PL-C-{account}"


# Role -> account code of the hand-written accounts (present when ``customers`` reaches them):
# trade, retail, wholesale, export_reverse_charge (EUR), customer_prices (PL-C-CUST0005 over
# PL-TRADE-GBP), credit_hold, inactive, tax_exempt (a charity, EXEMPT),
# customer_prices_with_discount (PL-C-CUST0009 over PL-WHOLESALE-GBP, 2.5 %), discount (5 %),
# export_reverse_charge_2.
NOTABLE_ACCOUNTS: dict[str, str] = {a.role: account_code(i) for i, a in enumerate(_FEATURED)}


@dataclass(frozen=True)
class SeedSummary:
    """What a seed wrote: rows per table and the accounts worth knowing."""

    customers: int
    products: int
    price_lists: int
    price_list_items: int
    inventory: int
    tax_codes: int
    warehouses: int
    customer_price_lists: int
    notable_accounts: dict[str, str] = field(default_factory=dict)
    inactive_skus: tuple[str, ...] = ()

    def __str__(self) -> str:
        return (
            f"{self.customers:,} customers, {self.products:,} SKUs, {self.price_lists:,} price "
            f"lists ({self.customer_price_lists:,} customer-specific), "
            f"{self.price_list_items:,} price rows, {self.inventory:,} stock rows"
        )

    @property
    def total_rows(self) -> int:
        return (
            self.customers
            + self.products
            + self.price_lists
            + self.price_list_items
            + self.inventory
            + self.tax_codes
            + self.warehouses
        )


def seed_erp(
    gateway: ErpGateway,
    *,
    customers: int = 40,
    skus: int = 200,
    price_rows: int | None = None,
    seed: int = 7,
) -> SeedSummary:
    """Replace the ERP's master data with the demo merchant (creating the tables if missing).

    ``price_rows`` (total price-list rows) scales pricing for benchmarks: the group lists price
    every SKU at every break, and the remaining rows are spread over customer-specific lists.
    Sales orders are never touched. Same arguments, same tables.
    """
    frames = demo_erp_frames(customers=customers, skus=skus, price_rows=price_rows, seed=seed)
    gateway.create_schema()
    gateway.replace_master_data(frames)
    return summarise(frames)


def summarise(frames: dict[str, pd.DataFrame]) -> SeedSummary:
    """Counts and notable accounts of a set of demo frames."""
    lists = frames["price_lists"]
    codes = set(frames["customers"]["account_code"])
    products = frames["products"]
    return SeedSummary(
        customers=len(frames["customers"]),
        products=len(products),
        price_lists=len(lists),
        price_list_items=len(frames["price_list_items"]),
        inventory=len(frames["inventory"]),
        tax_codes=len(frames["tax_codes"]),
        warehouses=len(frames["warehouses"]),
        customer_price_lists=int(lists["parent_code"].notna().sum()),
        notable_accounts={role: code for role, code in NOTABLE_ACCOUNTS.items() if code in codes},
        inactive_skus=tuple(sorted(products.loc[~products["active"], "sku"])),
    )


def demo_erp_frames(
    *, customers: int = 40, skus: int = 200, price_rows: int | None = None, seed: int = 7
) -> dict[str, pd.DataFrame]:
    """The demo ERP's master data as frames keyed by table (no I/O; used by :func:`seed_erp`)."""
    if customers < 0 or skus < 1:
        raise ValueError("the demo needs customers >= 0 and skus >= 1")
    rng = np.random.default_rng(seed)
    products = _products(rng, skus)
    base_price = _list_prices(rng, skus)
    group_prices = _group_price_cube(base_price)
    customers_frame = _customers(rng, customers)
    holders, rows_per_list = _customer_list_plan(customers_frame, skus, price_rows)
    customers_frame.loc[holders.index, "price_list_code"] = holders["account_code"].map(
        customer_price_list_code
    )
    price_lists = _price_lists(rng, holders)
    items = pd.concat(
        [
            _group_list_items(group_prices, products["sku"].to_numpy()),
            _customer_list_items(holders, rows_per_list, group_prices, products["sku"].to_numpy()),
        ],
        ignore_index=True,
    )
    items["updated_at"] = _days_before_seed_time(rng, len(items), 120)
    return {
        "tax_codes": TAX_CODES.copy(),
        "warehouses": WAREHOUSES.copy(),
        "products": products,
        "price_lists": price_lists,
        "price_list_items": items,
        "customers": customers_frame,
        "inventory": _inventory(rng, products),
    }


# -- catalogue -------------------------------------------------------------------------------


def _products(rng: np.random.Generator, count: int) -> pd.DataFrame:
    index = np.arange(count)
    category = index % len(CATALOGUE)
    number = index // len(CATALOGUE) + 1
    width = max(4, len(str(int(number.max()))))
    material_pick = rng.integers(0, 4, size=count)
    skus = [f"{CATALOGUE[c][0]}-{n:0{width}d}" for c, n in zip(category, number, strict=True)]
    names = [
        f"{CATALOGUE[c][2][m]} {CATALOGUE[c][1]} {CATALOGUE[c][3][n % 4]}"
        for c, m, n in zip(category, material_pick, number, strict=True)
    ]
    return pd.DataFrame(
        {
            "sku": skus,
            "name": names,
            # A few discontinued lines (every 50th SKU): still priced, no longer sold.
            "active": (index % 50) != 49,
            "updated_at": _days_before_seed_time(rng, count, 365),
        }
    )


def _list_prices(rng: np.random.Generator, count: int) -> np.ndarray:
    """Retail list price per SKU in GBP: mostly £5-£60, a long tail of dearer kit, at least £1."""
    return np.clip(np.round(rng.lognormal(np.log(18.0), 0.8, size=count), 2), 1.0, 900.0)


def _group_price_cube(base_price: np.ndarray) -> np.ndarray:
    """Price per (group, SKU, break), 2 dp; strictly decreasing along the breaks."""
    group_factor = np.array([GROUP_PRICE_LISTS[g][3] for g in GROUPS])
    break_factor = np.array(BREAK_FACTORS)
    cube = base_price[None, :, None] * group_factor[:, None, None] * break_factor[None, None, :]
    return np.round(cube, 2)


def _group_list_items(group_prices: np.ndarray, skus: np.ndarray) -> pd.DataFrame:
    groups, sku_count, breaks = group_prices.shape
    codes = np.array([GROUP_PRICE_LISTS[g][0] for g in GROUPS], dtype=object)
    return pd.DataFrame(
        {
            "price_list_code": np.repeat(codes, sku_count * breaks),
            "sku": np.tile(np.repeat(skus, breaks), groups),
            "min_quantity": np.tile(np.array(BREAK_QUANTITIES), groups * sku_count),
            "unit_price": group_prices.reshape(-1),
        }
    )


# -- customers -------------------------------------------------------------------------------


def _customers(rng: np.random.Generator, count: int) -> pd.DataFrame:
    featured = _FEATURED[:count]
    generated = count - len(featured)
    groups = [a.group for a in featured] + list(
        rng.choice(list(GROUP_SHARES), size=generated, p=list(GROUP_SHARES.values()))
    )
    legal_forms = rng.choice(UK_LEGAL_FORMS, size=generated)
    discount_draw = rng.random(generated)
    names: list[str] = [a.name for a in featured]
    uk_index = eu_index = 0
    for offset, group in enumerate(groups[len(featured) :]):
        if group == "export":
            names.append(eu_company_name(eu_index))
            eu_index += 1
        else:
            names.append(uk_company_name(uk_index, str(legal_forms[offset])))
            uk_index += 1

    group_array = np.array(groups, dtype=object)
    is_export = group_array == "export"
    is_wholesale = group_array == "wholesale"
    discount = np.zeros(count)
    discount[: len(featured)] = [a.discount_percentage for a in featured]
    # Some generated trade and wholesale accounts negotiated 2.5 % or 5 % off.
    negotiated = np.isin(group_array[len(featured) :], ["trade", "wholesale"])
    discount[len(featured) :] = np.where(
        negotiated & (discount_draw < 0.15), np.where(discount_draw < 0.07, 5.0, 2.5), 0.0
    )
    credit_limit = np.select(
        [group_array == "trade", is_wholesale, is_export],
        [
            rng.choice([5_000.0, 10_000.0, 15_000.0, 25_000.0], size=count),
            rng.choice([50_000.0, 75_000.0, 100_000.0], size=count),
            rng.choice([20_000.0, 40_000.0], size=count),
        ],
        default=2_500.0,
    )
    tax_code = np.where(is_export, "REVERSE_CHARGE", "STANDARD").astype(object)
    tax_code[: len(featured)] = [a.tax_code for a in featured]
    frame = pd.DataFrame(
        {
            "account_code": [account_code(i) for i in range(count)],
            "name": names,
            "email": [f"purchasing@{email_domain(n)}" for n in names],
            "customer_group": group_array,
            "price_list_code": [GROUP_PRICE_LISTS[g][0] for g in groups],
            "discount_percentage": discount,
            "payment_terms": np.where(is_wholesale, "NET60", "NET30").astype(object),
            "tax_code": tax_code,
            "currency": [GROUP_PRICE_LISTS[g][2] for g in groups],
            "credit_limit": credit_limit,
            "credit_hold": [a.credit_hold for a in featured] + [False] * generated,
            "active": [a.active for a in featured] + [True] * generated,
            "updated_at": _days_before_seed_time(rng, count, 365),
        }
    )
    # Two companies can share a generated name's domain only past the name space: keep emails
    # unique, as the portal requires.
    clash = frame["email"].duplicated(keep="first")
    frame.loc[clash, "email"] = (
        "purchasing+"
        + frame.loc[clash, "account_code"].str.lower()
        + "@"
        + frame.loc[clash, "email"].str.split("@").str[1]
    )
    return frame


# -- customer-specific price lists -----------------------------------------------------------


def _customer_list_plan(
    customers: pd.DataFrame, skus: int, price_rows: int | None
) -> tuple[pd.DataFrame, np.ndarray]:
    """Which accounts get their own list, and how many price rows each list holds.

    At the default size: the featured accounts marked so, plus every 7th generated trade or
    wholesale account, each overriding 8 SKUs at every break. With ``price_rows``: the rows the
    group lists do not use, spread evenly over as many accounts as needed (about 8 SKUs each,
    more when there are not enough accounts), in the same order of accounts.
    """
    featured = len(_FEATURED)
    position = np.arange(len(customers))
    eligible_group = customers["customer_group"].isin(["trade", "wholesale"]).to_numpy()
    marked = np.zeros(len(customers), dtype=bool)
    marked[: min(featured, len(customers))] = [
        a.customer_prices for a in _FEATURED[: len(customers)]
    ]
    marked |= (position >= featured) & (position % 7 == 0) & eligible_group
    per_default_list = min(DEFAULT_OVERRIDDEN_SKUS, skus) * len(BREAK_QUANTITIES)
    capacity = skus * len(BREAK_QUANTITIES)  # a list cannot hold more rows than this

    if price_rows is None:
        holders = customers.loc[marked]
        return holders, np.full(len(holders), per_default_list, dtype=np.int64)

    group_rows = len(GROUPS) * capacity
    remaining = price_rows - group_rows
    if remaining < 0:
        raise ValueError(
            f"price_rows={price_rows:,} is below the {group_rows:,} rows the four group lists "
            f"need to price {skus:,} SKUs at {len(BREAK_QUANTITIES)} breaks; raise price_rows "
            "or lower skus"
        )
    if remaining == 0:
        return customers.iloc[0:0], np.zeros(0, dtype=np.int64)
    order = np.concatenate([np.flatnonzero(marked), np.flatnonzero(~marked)])
    lists = min(len(customers), -(-remaining // per_default_list))
    if lists == 0 or -(-remaining // lists) > capacity:
        raise ValueError(
            f"price_rows={price_rows:,} needs more customer-specific rows than {len(customers):,} "
            f"customers can hold at {capacity:,} rows each; raise customers or skus"
        )
    rows = np.full(lists, remaining // lists, dtype=np.int64)
    rows[: remaining % lists] += 1
    return customers.iloc[order[:lists]], rows


def _customer_list_items(
    holders: pd.DataFrame, rows_per_list: np.ndarray, group_prices: np.ndarray, skus: np.ndarray
) -> pd.DataFrame:
    """Override rows: each list takes a run of SKUs (all breaks) at 10 % under its group list."""
    total = int(rows_per_list.sum())
    breaks = len(BREAK_QUANTITIES)
    list_index = np.repeat(np.arange(len(holders)), rows_per_list)
    starts = np.repeat(np.cumsum(rows_per_list) - rows_per_list, rows_per_list)
    within = np.arange(total) - starts
    # Lists start at different SKUs so overrides spread over the catalogue.
    first_sku = (np.arange(len(holders)) * 37) % len(skus)
    sku_position = (first_sku[list_index] + within // breaks) % len(skus)
    break_position = within % breaks
    group_index = holders["customer_group"].map({g: i for i, g in enumerate(GROUPS)}).to_numpy()
    group_price = group_prices[group_index[list_index], sku_position, break_position]
    codes = holders["account_code"].map(customer_price_list_code).to_numpy(dtype=object)
    return pd.DataFrame(
        {
            "price_list_code": codes[list_index],
            "sku": skus[sku_position],
            "min_quantity": np.array(BREAK_QUANTITIES)[break_position],
            "unit_price": np.round(group_price * CUSTOMER_LIST_FACTOR, 2),
        }
    )


def _price_lists(rng: np.random.Generator, holders: pd.DataFrame) -> pd.DataFrame:
    group_lists = pd.DataFrame(
        {
            "code": [GROUP_PRICE_LISTS[g][0] for g in GROUPS],
            "name": [GROUP_PRICE_LISTS[g][1] for g in GROUPS],
            "currency": [GROUP_PRICE_LISTS[g][2] for g in GROUPS],
            "parent_code": [None] * len(GROUPS),
        }
    )
    parents = holders["customer_group"].map(lambda g: GROUP_PRICE_LISTS[g][0])
    customer_lists = pd.DataFrame(
        {
            "code": holders["account_code"].map(customer_price_list_code).to_numpy(dtype=object),
            "name": ("Contract prices: " + holders["name"]).to_numpy(dtype=object),
            "currency": holders["customer_group"]
            .map(lambda g: GROUP_PRICE_LISTS[g][2])
            .to_numpy(dtype=object),
            "parent_code": parents.to_numpy(dtype=object),
        }
    )
    lists = pd.concat([group_lists, customer_lists], ignore_index=True)
    lists["parent_code"] = lists["parent_code"].astype(object)
    lists["updated_at"] = _days_before_seed_time(rng, len(lists), 90)
    return lists


# -- stock -----------------------------------------------------------------------------------


def _inventory(rng: np.random.Generator, products: pd.DataFrame) -> pd.DataFrame:
    """Every SKU in both warehouses; some out of stock, discontinued lines at zero."""
    count = len(products)
    main = np.where(rng.random(count) < 0.08, 0, rng.integers(1, 500, size=count))
    north = np.where(rng.random(count) < 0.30, 0, rng.integers(1, 150, size=count))
    on_hand = np.concatenate([main, north])
    on_hand = np.where(np.tile(products["active"].to_numpy(), 2), on_hand, 0)
    allocated = np.floor(on_hand * rng.uniform(0.0, 0.3, size=2 * count)).astype(np.int64)
    return pd.DataFrame(
        {
            "sku": np.tile(products["sku"].to_numpy(dtype=object), 2),
            "warehouse_code": np.repeat(WAREHOUSES["code"].to_numpy(dtype=object), count),
            "on_hand": on_hand.astype(np.int64),
            "allocated": allocated,
            "updated_at": SEED_TIME - pd.to_timedelta(rng.integers(0, 72, size=2 * count), "h"),
        }
    )


def _days_before_seed_time(rng: np.random.Generator, count: int, max_days: int) -> pd.Series:
    return pd.Series(SEED_TIME - pd.to_timedelta(rng.integers(0, max_days, size=count), "D"))
