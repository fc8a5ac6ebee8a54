"""The demo data: a believable merchant, identical every time, priced consistently, fast to load.

Seeded into real databases (SQLite and PostgreSQL) and into the real simulator.
"""

from __future__ import annotations

import pandas as pd
import pytest
import requests

from b2b_pipeline.config.mappings import load_mappings
from b2b_pipeline.connectors.erp.gateway import ErpGateway
from b2b_pipeline.demo import NOTABLE_ACCOUNTS, demo_erp_frames, seed_erp, seed_portal
from b2b_pipeline.demo.erp_seed import BREAK_QUANTITIES

MASTER_TABLES = (
    "tax_codes",
    "warehouses",
    "products",
    "price_lists",
    "price_list_items",
    "customers",
    "inventory",
)


KEYS = {
    "price_list_items": ["price_list_code", "sku", "min_quantity"],
    "customers": ["account_code"],
    "inventory": ["sku", "warehouse_code"],
}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def gateway(request: pytest.FixtureRequest) -> ErpGateway:
    return request.getfixturevalue("erp" if request.param == "sqlite" else "erp_postgres")


def _contents(gateway: ErpGateway) -> dict[str, pd.DataFrame]:
    return {name: gateway.read_table(name) for name in MASTER_TABLES}


def test_seeding_twice_gives_identical_tables(gateway: ErpGateway) -> None:
    first_summary = seed_erp(gateway)
    first = _contents(gateway)
    second_summary = seed_erp(gateway)
    second = _contents(gateway)

    assert second_summary == first_summary
    for name in MASTER_TABLES:
        pd.testing.assert_frame_equal(second[name], first[name], obj=name)
    assert first_summary.customers == 40 and first_summary.products == 200


def test_another_seed_gives_other_data(erp: ErpGateway) -> None:
    def trade_prices() -> pd.DataFrame:
        items = erp.read_price_list_items()
        return items[items["price_list_code"] == "PL-TRADE-GBP"].reset_index(drop=True)

    seed_erp(erp, seed=7)
    seven = trade_prices()
    seed_erp(erp, seed=8)
    eight = trade_prices()
    assert seven["sku"].equals(eight["sku"])  # same catalogue shape ...
    assert not seven["unit_price"].equals(eight["unit_price"])  # ... other prices


def test_seeding_keeps_posted_sales_orders(erp: ErpGateway) -> None:
    seed_erp(erp)
    orders = pd.DataFrame(
        [
            {"external_ref": "pur_1", "account_code": NOTABLE_ACCOUNTS["trade"],
             "po_number": None, "order_date": pd.Timestamp("2025-02-03", tz="UTC"),
             "status": "TO_BE_INVOICED", "payment_method": "pay_on_account",
             "payment_terms": "NET30", "tax_code": "STANDARD", "currency": "GBP",
             "net_total": 10.0, "tax_total": 2.0, "gross_total": 12.0}
        ]
    )  # fmt: skip
    lines = pd.DataFrame(
        [{"external_ref": "pur_1", "line_no": 1, "sku": "WID-0001", "quantity": 1,
          "unit_price": 10.0, "line_net": 10.0, "tax_amount": 2.0}]
    )  # fmt: skip
    erp.post_sales_orders(orders, lines)
    seed_erp(erp)
    assert erp.existing_orders(["pur_1"])["external_ref"].tolist() == ["pur_1"]


def test_the_demo_merchant_has_the_accounts_a_demo_needs(erp: ErpGateway) -> None:
    summary = seed_erp(erp)
    customers = erp.read_customers().set_index("account_code")
    lists = erp.read_price_lists().set_index("code")
    mappings = load_mappings()

    assert summary.notable_accounts == NOTABLE_ACCOUNTS
    assert set(customers["customer_group"]) == set(mappings.customer_groups)
    assert set(customers["currency"]) == {"GBP", "EUR"}
    assert set(customers["payment_terms"]) == {"NET30", "NET60"}
    assert set(customers["tax_code"]) <= set(mappings.tax_codes)
    assert set(erp.read_warehouses()["code"]) == set(mappings.stock_locations)

    held = customers[customers["credit_hold"]]
    assert held.index.tolist() == [NOTABLE_ACCOUNTS["credit_hold"]]
    assert customers.index[~customers["active"]].tolist() == [NOTABLE_ACCOUNTS["inactive"]]
    assert customers.loc[NOTABLE_ACCOUNTS["tax_exempt"], "tax_code"] == "EXEMPT"
    export = customers.loc[NOTABLE_ACCOUNTS["export_reverse_charge"]]
    assert (export["tax_code"], export["currency"], export["price_list_code"]) == (
        "REVERSE_CHARGE",
        "EUR",
        "PL-EXPORT-EUR",
    )
    special = customers.loc[NOTABLE_ACCOUNTS["customer_prices"], "price_list_code"]
    assert special == f"PL-C-{NOTABLE_ACCOUNTS['customer_prices']}"
    assert lists.loc[special, "parent_code"] == "PL-TRADE-GBP"
    discounted = customers.loc[NOTABLE_ACCOUNTS["customer_prices_with_discount"]]
    assert discounted["discount_percentage"] == 2.5
    assert lists.loc[discounted["price_list_code"], "parent_code"] == "PL-WHOLESALE-GBP"
    group_lists = {"PL-TRADE-GBP", "PL-RETAIL-GBP", "PL-WHOLESALE-GBP", "PL-EXPORT-EUR"}
    assert group_lists <= set(lists.index)
    assert set(lists["parent_code"].dropna()) <= group_lists

    products = erp.read_products()
    assert products["sku"].str.fullmatch(r"[A-Z]{3}-\d{4}").all()
    assert 0 < (~products["active"]).sum() < 10
    assert summary.inactive_skus == tuple(products.loc[~products["active"], "sku"])


def test_every_active_account_is_priced_for_every_active_sku(erp: ErpGateway) -> None:
    seed_erp(erp)
    customers = erp.read_customers()
    lists = erp.read_price_lists()
    items = erp.read_price_list_items()
    active_skus = set(erp.read_products().query("active")["sku"])

    # An account's lists: its own and, for a customer-specific list, the parent group list.
    accounts = customers[customers["active"]].merge(
        lists[["code", "parent_code", "currency"]], left_on="price_list_code", right_on="code"
    )
    assert len(accounts) == customers["active"].sum(), "an account names no existing list"
    assert (accounts["currency_x"] == accounts["currency_y"]).all()
    own = accounts[["account_code", "price_list_code"]]
    parent = accounts.dropna(subset=["parent_code"])[["account_code", "parent_code"]]
    account_lists = pd.concat(
        [
            own.rename(columns={"price_list_code": "list"}),
            parent.rename(columns={"parent_code": "list"}),
        ]
    )
    single_units = items[items["min_quantity"] == 1]
    priced = account_lists.merge(single_units, left_on="list", right_on="price_list_code")
    covered = priced.groupby("account_code")["sku"].agg(set)
    for account in accounts["account_code"]:
        assert active_skus <= covered[account], f"{account} lacks prices"

    # Quantity breaks 1/10/50/100 with strictly falling prices; money at 2 decimals.
    per_sku = items.sort_values("min_quantity").groupby(["price_list_code", "sku"])
    assert set(items["min_quantity"]) == set(BREAK_QUANTITIES)
    assert per_sku["unit_price"].apply(lambda p: p.is_monotonic_decreasing and p.is_unique).all()
    assert ((items["unit_price"] * 100).round(6) % 1 == 0).all()
    assert (items["unit_price"] > 0).all()


def test_customer_specific_prices_undercut_the_group_list(erp: ErpGateway) -> None:
    seed_erp(erp)
    items = erp.read_price_list_items()
    lists = erp.read_price_lists().dropna(subset=["parent_code"])
    overrides = items.merge(
        lists[["code", "parent_code"]], left_on="price_list_code", right_on="code"
    )
    compared = overrides.merge(
        items,
        left_on=["parent_code", "sku", "min_quantity"],
        right_on=["price_list_code", "sku", "min_quantity"],
        suffixes=("_customer", "_group"),
    )
    assert len(compared) == len(overrides) > 0
    assert (compared["unit_price_customer"] < compared["unit_price_group"]).all()


def test_a_large_seed_loads_in_bulk_and_reads_back_exactly(gateway: ErpGateway) -> None:
    sizes = {"customers": 300, "skus": 2_000, "price_rows": 50_000}
    summary = seed_erp(gateway, **sizes)
    expected = demo_erp_frames(**sizes)

    assert summary.price_list_items == 50_000
    assert summary.customer_price_lists == 300  # 18,000 rows over every account
    for name in KEYS:
        keys = KEYS[name]
        got = gateway.read_table(name)
        want = expected[name].sort_values(keys, ignore_index=True)[list(got.columns)]
        pd.testing.assert_frame_equal(got, want, check_dtype=False, obj=name)


def test_too_few_price_rows_for_the_group_lists_is_refused(erp: ErpGateway) -> None:
    with pytest.raises(ValueError, match="below the 3,200 rows"):
        seed_erp(erp, price_rows=1_000)
    assert erp.read_customers().empty  # nothing was written


def test_portal_seed_registers_companies_without_erp_accounts(simulator: object) -> None:
    created = seed_portal(simulator.url)
    assert [c["company_name"] for c in created] == [
        "Brightwell Interiors Ltd",
        "Northgate Facilities Management",
        "Kestrel Signs & Print",
    ]
    assert all(c["accounting_id"] is None and c["external_id"] is None for c in created)
    assert len({c["email"] for c in created}) == 3
    state = requests.get(f"{simulator.url}/_sim/state", timeout=10).json()
    assert state["customers"] == 3
    # Seeding the portal again finds the same companies: still three.
    again = seed_portal(simulator.url)
    assert [c["id"] for c in again] == [c["id"] for c in created]
    assert requests.get(f"{simulator.url}/_sim/state", timeout=10).json()["customers"] == 3
