"""The one price rule: quantity breaks, customer lists over group lists, discount, rounding."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pandas as pd
import pytest

from b2b_pipeline.domain.pricing import line_amounts, resolve_unit_prices, round_half_up

ACCOUNTS = pd.DataFrame(
    {
        "account_code": ["TRADE01", "ACME02", "SALE03"],
        "price_list_code": ["PL-TRADE", "PL-ACME02", "PL-TRADE"],
        "discount_percentage": [0.0, 0.0, 10.0],
    }
)
PRICE_LISTS = pd.DataFrame(
    {
        "code": ["PL-TRADE", "PL-ACME02"],
        "parent_code": [None, "PL-TRADE"],
        "currency": ["GBP", "GBP"],
    }
)
ITEMS = pd.DataFrame(
    [
        # A group list with quantity breaks at 10 and 50.
        ("PL-TRADE", "WID-0001", 1, 12.40),
        ("PL-TRADE", "WID-0001", 10, 12.10),
        ("PL-TRADE", "WID-0001", 50, 11.50),
        ("PL-TRADE", "WID-0002", 1, 5.00),
        ("PL-TRADE", "WID-0003", 1, 20.00),
        # ACME's own list: cheaper on WID-0001 at every quantity, dearer on WID-0003.
        ("PL-ACME02", "WID-0001", 1, 11.00),
        ("PL-ACME02", "WID-0003", 1, 25.00),
        # A list whose breaks are not monotone: the lowest reached break wins.
        ("PL-TRADE", "WID-0004", 1, 8.00),
        ("PL-TRADE", "WID-0004", 10, 9.00),
    ],
    columns=["price_list_code", "sku", "min_quantity", "unit_price"],
)


def resolve(account: str, sku: str, quantity: int, items: pd.DataFrame = ITEMS) -> pd.Series:
    lines = pd.DataFrame(
        {"line_key": ["L1"], "account_code": [account], "sku": [sku], "quantity": [quantity]}
    )
    return resolve_unit_prices(lines, ACCOUNTS, PRICE_LISTS, items).iloc[0]


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [(1, 12.40), (9, 12.40), (10, 12.10), (11, 12.10), (49, 12.10), (50, 11.50), (500, 11.50)],
)
def test_quantity_break_applies_from_its_minimum_quantity(quantity: int, expected: float) -> None:
    assert resolve("TRADE01", "WID-0001", quantity)["erp_unit_price"] == expected


def test_customer_specific_list_overrides_the_parent_where_cheaper() -> None:
    own = resolve("ACME02", "WID-0001", 60)
    assert (own["list_price"], own["source_list"]) == (11.00, "PL-ACME02")


def test_parent_list_prices_skus_the_customer_list_lacks_or_prices_higher() -> None:
    missing_from_own = resolve("ACME02", "WID-0002", 1)
    dearer_in_own = resolve("ACME02", "WID-0003", 1)
    assert (missing_from_own["list_price"], missing_from_own["source_list"]) == (5.00, "PL-TRADE")
    assert (dearer_in_own["list_price"], dearer_in_own["source_list"]) == (20.00, "PL-TRADE")


def test_lowest_reached_break_wins_when_breaks_are_not_monotone() -> None:
    assert resolve("TRADE01", "WID-0004", 12)["list_price"] == 8.00


def test_discount_is_applied_and_rounded_half_up() -> None:
    # 12.05 less 10% is 10.845: half-up gives 10.85 where round-half-even gives 10.84.
    items = pd.concat(
        [ITEMS, pd.DataFrame([("PL-TRADE", "WID-0009", 1, 12.05)], columns=ITEMS.columns)]
    )
    priced = resolve("SALE03", "WID-0009", 1, items)
    assert (priced["list_price"], priced["erp_unit_price"]) == (12.05, 10.85)


@pytest.mark.parametrize(
    ("account", "sku", "quantity"),
    [("TRADE01", "WID-9999", 1), ("NOBODY", "WID-0001", 1)],
    ids=["sku-in-no-list", "unknown-account"],
)
def test_no_price_is_nan_not_zero(account: str, sku: str, quantity: int) -> None:
    priced = resolve(account, sku, quantity)
    assert np.isnan(priced["erp_unit_price"]) and pd.isna(priced["source_list"])


def test_results_follow_the_input_order_and_index() -> None:
    lines = pd.DataFrame(
        {
            "line_key": ["c", "a", "b"],
            "account_code": ["TRADE01", "ACME02", "TRADE01"],
            "sku": ["WID-0001", "WID-0001", "WID-0002"],
            "quantity": [10, 1, 3],
        },
        index=[30, 10, 20],
    )
    priced = resolve_unit_prices(lines, ACCOUNTS, PRICE_LISTS, ITEMS)
    assert priced.index.tolist() == [30, 10, 20]
    assert priced["line_key"].tolist() == ["c", "a", "b"]
    assert priced["erp_unit_price"].tolist() == [12.10, 11.00, 5.00]


def test_decimal_prices_from_the_erp_give_the_same_result() -> None:
    as_decimals = ITEMS.assign(unit_price=ITEMS["unit_price"].map(lambda p: Decimal(str(p))))
    assert resolve("TRADE01", "WID-0001", 10, as_decimals)["erp_unit_price"] == 12.10


def test_round_half_up_matches_decimal_rounding_to_the_cent() -> None:
    # Every amount with three decimals from -50.000 to 50.000: all the half-cent cases.
    thousandths = np.arange(-50_000, 50_001)
    values = thousandths / 1000
    expected = [
        float(Decimal(int(k)).scaleb(-3).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
        for k in thousandths
    ]
    assert np.array_equal(round_half_up(values, 2), np.array(expected))


def test_round_half_up_keeps_the_shape_it_was_given() -> None:
    assert round_half_up(1.005) == 1.01
    assert isinstance(round_half_up(2.675), float)
    series = round_half_up(pd.Series([0.125, np.nan], index=[7, 8]))
    assert series.index.tolist() == [7, 8] and series.iloc[0] == 0.13 and np.isnan(series.iloc[1])


def test_line_tax_is_rounded_per_line() -> None:
    # Three lines of 0.33 net at 20%: 0.07 tax each (0.066 rounded), 0.21 in all, where taxing
    # the 0.99 total would give 0.20.
    net, tax = line_amounts(pd.Series([0.33, 0.33, 0.33]), pd.Series([1, 1, 1]), 20.0)
    assert net.tolist() == [0.33, 0.33, 0.33]
    assert tax.tolist() == [0.07, 0.07, 0.07]


def test_line_net_is_unit_times_quantity_to_the_cent() -> None:
    net, tax = line_amounts(np.array([12.10, 0.1]), np.array([3, 3]), np.array([20.0, 0.0]))
    assert net.tolist() == [36.30, 0.30]
    assert tax.tolist() == [7.26, 0.0]
