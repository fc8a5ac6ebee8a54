"""The portal charges what the ERP charges, and the price probe says so before a buyer orders.

The portal prices a buyer from the first of their lists that prices a SKU; the ERP takes the
lowest break over the account's list and its group list. The end-to-end tests run the real
simulator (which prices by the portal's rule, on its own), a seeded SQLite ERP and the audit
DuckDB file through the project's own Dagster jobs; the unit tests cover the probe's sample
and comparison without servers.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from b2b_pipeline.demo.erp_seed import NOTABLE_ACCOUNTS
from b2b_pipeline.domain import price_probe
from b2b_pipeline.domain.exceptions import REASONS
from b2b_pipeline.domain.pricing import resolve_unit_prices

OWN = NOTABLE_ACCOUNTS["customer_prices"]  # CUST0005: PL-C-CUST0005 over PL-TRADE-GBP
OWN_LIST = "PL-C-CUST0005"
GROUP_LIST = "PL-TRADE-GBP"
SKU = "BRK-0001"  # trade list: 10.62 from 1, 10.09 from 10, 9.56 from 50, 9.03 from 100
FULL_COMPARISON = {"ops": {"portal_price_lists": {"config": {"full_comparison": True}}}}
# Own-list accounts only, every SKU of their own lists (8 at the demo size) and some more.
PROBE_OWN_LISTS = {
    "ops": {"portal_price_probe": {"config": {"probe_share": 0.0, "max_skus_per_account": 12}}}
}
FETCH_PRICING = "POST /api/v1/fetch-customer-pricing"


def erp_unit_prices(pipeline, account: str, sku: str, quantities: list[int]) -> list[float]:
    """What the ERP charges, by the rule the order check uses."""
    lines = pd.DataFrame(
        {
            "line_key": range(len(quantities)),
            "account_code": account,
            "sku": sku,
            "quantity": quantities,
        }
    )
    priced = resolve_unit_prices(
        lines,
        pipeline.erp.read_customers(),
        pipeline.erp.read_price_lists(),
        pipeline.erp.read_price_list_items(),
    )
    return priced["erp_unit_price"].tolist()


def open_pricing_exceptions(pipeline) -> pd.DataFrame:
    return pipeline.audit.exceptions(status="open", category="PRICING")


# --- the sync bridges the two price rules ---------------------------------------------------


def test_an_order_where_the_group_break_is_cheaper_is_priced_by_the_portal_as_the_erp_prices_it(
    pipeline,
):
    # CUST0005's own list prices BRK-0001 at one break, 9.90 from 1: from 50 up its trade
    # list is cheaper (9.56, then 9.03 from 100), and the ERP charges the lower price. The
    # portal, taking the first list that prices the SKU, would charge 9.90 from the own list.
    pipeline.erp.delete_price(OWN_LIST, SKU)
    pipeline.erp.set_price(OWN_LIST, SKU, 1, "9.90")
    pipeline.run("price_sync_job")

    quantities = [1, 9, 10, 49, 50, 99, 100, 250]
    erp = erp_unit_prices(pipeline, OWN, SKU, quantities)
    assert erp == [9.90, 9.90, 9.90, 9.90, 9.56, 9.56, 9.03, 9.03]
    answer = pipeline.portal.fetch_customer_pricing(
        OWN, [{"sku": SKU, "quantity": q} for q in quantities], lookup_by="platform"
    )
    assert [row["unit_price"] for row in answer] == erp
    assert all(not row.get("error") for row in answer)

    # A buyer orders 100 at the portal: the order reaches the ERP at the ERP's own price, with
    # no PRICING exception on the way.
    pipeline.order(OWN, [{"sku": SKU, "quantity": 100}], customer_reference="PO-BREAK-100")
    pipeline.run("order_intake_job")
    assert open_pricing_exceptions(pipeline).empty
    orders = pipeline.sales_orders()
    assert len(orders) == 1
    lines = pipeline.erp.read_sales_order_lines(orders["order_no"])
    assert lines[["sku", "quantity"]].values.tolist() == [[SKU, 100]]
    assert float(lines["unit_price"].iloc[0]) == 9.03


# --- the probe ----------------------------------------------------------------------------


@pytest.mark.slow
def test_the_price_probe_flags_a_price_edited_by_hand_and_clears_once_the_sync_repairs_it(
    pipeline,
):
    pipeline.run("price_sync_job")
    clean = pipeline.run("price_probe_job", PROBE_OWN_LISTS)
    meta = pipeline.metadata(clean, "portal_price_probe")
    own_list_accounts = (
        pipeline.erp.read_customers()
        .query("active == 1 and credit_hold == 0")["price_list_code"]
        .str.startswith("PL-C-")
        .sum()
    )
    assert meta["accounts_probed"] == meta["accounts_with_own_list"] == own_list_accounts >= 2
    assert meta["lines_probed"] > 0 and meta["lines_differing"] == 0
    assert open_pricing_exceptions(pipeline).empty

    # Someone edits CUST0005's price of BRK-0001 by hand in the portal: 5.00 at any quantity.
    pipeline.portal.patch_pricing(
        OWN_LIST, [{"sku": SKU, "pricing": [{"quantity": 1, "price": 5.00}]}]
    )
    pipeline.reset_calls()
    flagged = pipeline.run("price_probe_job", PROBE_OWN_LISTS)

    queue = open_pricing_exceptions(pipeline)
    assert len(queue) == 1
    exception = queue.iloc[0]
    assert exception["reason_code"] == "PORTAL_PRICE_DIFFERS"
    assert REASONS["PORTAL_PRICE_DIFFERS"].category.value == "PRICING"
    assert (exception["account_code"], exception["entity_key"]) == (OWN, f"{OWN}/{SKU}")
    message = exception["message"]
    for named in (OWN, "Thames Valley Joinery Ltd", OWN_LIST, SKU, "£5.00", "£9.56"):
        assert named in message, named
    # Three break quantities are spelt out, the fourth counted (the payload has them all).
    assert "at 1 the portal would charge £5.00 each, the ERP £9.56" in message
    assert "and at 1 more quantity" in message
    assert "full_comparison" in message
    assert "Traceback" not in message and "\n" not in message
    # The API calls it used are reported, and are what the portal received: one pricing call
    # per account probed (and the token).
    meta = pipeline.metadata(flagged, "portal_price_probe")
    calls = pipeline.calls()
    assert meta["api_calls"] == calls["total"]
    assert calls["by_endpoint"][FETCH_PRICING] == meta["accounts_probed"]
    assert meta["skus_differing"] == 1 and meta["lines_differing"] == 4

    # Probing again finds the same difference: no second exception.
    pipeline.run("price_probe_job", PROBE_OWN_LISTS)
    assert len(open_pricing_exceptions(pipeline)) == 1

    # The nightly full comparison puts the ERP's prices back; the next probe closes it.
    pipeline.run("price_sync_job", FULL_COMPARISON)
    repaired = pipeline.run("price_probe_job", PROBE_OWN_LISTS)
    assert open_pricing_exceptions(pipeline).empty
    closed = pipeline.audit.exception(exception["exception_id"])
    assert (closed["status"], closed["resolved_by"]) == ("resolved", "pipeline")
    assert pipeline.metadata(repaired, "portal_price_probe")["exceptions_resolved"] == 1


def test_the_default_probe_also_covers_a_share_of_group_list_accounts(pipeline):
    pipeline.run("price_sync_job")
    result = pipeline.run("price_probe_job")
    meta = pipeline.metadata(result, "portal_price_probe")
    assert meta["probe_share"] == 0.1
    assert meta["accounts_probed"] > meta["accounts_with_own_list"]
    assert meta["lines_differing"] == 0
    assert open_pricing_exceptions(pipeline).empty


# --- the sample and the comparison, without servers -------------------------------------------

PRICE_LISTS = pd.DataFrame(
    {
        "code": ["PL-TRADE", "PL-C-ACME"],
        "parent_code": [None, "PL-TRADE"],
        "currency": ["GBP", "GBP"],
    }
)
ITEMS = pd.DataFrame(
    [
        ("PL-TRADE", "WID-0001", 1, 10.0),
        ("PL-TRADE", "WID-0001", 10, 9.0),
        ("PL-TRADE", "WID-0002", 1, 5.0),
        ("PL-TRADE", "WID-0003", 1, 7.0),
        ("PL-C-ACME", "WID-0001", 1, 9.5),
        ("PL-C-ACME", "WID-0001", 20, 8.0),
    ],
    columns=["price_list_code", "sku", "min_quantity", "unit_price"],
)


def customers(count: int, **overrides: object) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "account_code": [f"ACC{i:04d}" for i in range(count)],
            "name": [f"Company {i}" for i in range(count)],
            "price_list_code": "PL-TRADE",
            "discount_percentage": 0.0,
            "active": True,
            "credit_hold": False,
        }
    )
    frame.loc[0, "price_list_code"] = "PL-C-ACME"
    for column, value in overrides.items():
        frame[column] = value
    return frame


def test_every_own_list_account_is_probed_and_a_rotating_share_of_the_rest() -> None:
    accounts = customers(400)
    days = [date(2026, 3, 1) + timedelta(days=n) for n in range(10)]
    samples = [price_probe.probe_accounts(accounts, PRICE_LISTS, on=day, share=0.1) for day in days]
    for sample in samples:
        assert "ACC0000" in set(sample["account_code"])  # its own list: every run
        assert sample.set_index("account_code").loc["ACC0000", "own_list"]
        assert 20 <= len(sample) - 1 <= 60  # about a tenth of the 399 others
    # The same day gives the same sample; consecutive days differ; ten days cover everyone.
    again = price_probe.probe_accounts(accounts, PRICE_LISTS, on=days[0], share=0.1)
    assert again["account_code"].tolist() == samples[0]["account_code"].tolist()
    assert set(samples[0]["account_code"]) != set(samples[1]["account_code"])
    covered = set().union(*(set(s["account_code"]) for s in samples))
    assert covered == set(accounts["account_code"])


def test_held_inactive_and_unpriced_accounts_are_not_probed() -> None:
    accounts = customers(4)
    accounts.loc[1, "credit_hold"] = True
    accounts.loc[2, "active"] = False
    accounts.loc[3, "price_list_code"] = None
    sample = price_probe.probe_accounts(accounts, PRICE_LISTS, on=date(2026, 3, 1), share=1.0)
    assert sample["account_code"].tolist() == ["ACC0000"]


def test_skus_are_capped_per_account_own_list_first_at_every_break_quantity() -> None:
    sample = price_probe.probe_accounts(customers(2), PRICE_LISTS, on=date(2026, 3, 1), share=1)
    lines = price_probe.probe_lines(sample, ITEMS, on=date(2026, 3, 1), max_skus=2)

    acme = lines[lines["account_code"] == "ACC0000"]
    # Its own list's one SKU first, at both lists' breaks; then one more from the trade list.
    assert acme.loc[acme["sku"] == "WID-0001", "quantity"].tolist() == [1, 10, 20]
    assert acme["sku"].nunique() == 2
    trade = lines[lines["account_code"] == "ACC0001"]
    assert trade["sku"].nunique() == 2
    # Held-back pairs are left out: the portal keeps their last good prices on purpose.
    held = pd.DataFrame({"price_list_code": ["PL-TRADE"], "sku": ["WID-0001"]})
    kept = price_probe.probe_lines(sample, ITEMS, on=date(2026, 3, 1), max_skus=3, held_back=held)
    assert "WID-0001" not in set(kept["sku"])


def test_a_differing_or_missing_portal_price_is_one_exception_per_account_and_sku() -> None:
    accounts = customers(1)
    sample = price_probe.probe_accounts(accounts, PRICE_LISTS, on=date(2026, 3, 1), share=1)
    lines = price_probe.probe_lines(sample, ITEMS, on=date(2026, 3, 1), max_skus=5)
    # The ERP's answer for ACC0000: WID-0001 9.50 / 9.00 / 8.00; WID-0002 5.00; WID-0003 7.00.
    erp = {("WID-0001", 1): 9.5, ("WID-0001", 10): 9.0, ("WID-0001", 20): 8.0}
    portal = lines.assign(
        unit_price=[erp.get((s, q)) for s, q in zip(lines.sku, lines.quantity, strict=True)]
    )
    portal["error"] = None
    portal.loc[portal["sku"] == "WID-0002", "unit_price"] = 5.0
    portal.loc[portal["sku"] == "WID-0003", "error"] = "SKU 'WID-0003' has no price"
    portal.loc[(portal["sku"] == "WID-0001") & (portal["quantity"] == 10), "unit_price"] = 9.5

    compared = price_probe.compare_prices(
        lines, portal, customers=accounts, price_lists=PRICE_LISTS, items=ITEMS
    )
    assert compared.loc[compared["differs"], ["sku", "quantity"]].values.tolist() == [
        ["WID-0001", 10],
        ["WID-0003", 1],
    ]
    exceptions = price_probe.probe_exceptions(compared, sample)
    assert exceptions["entity_key"].tolist() == ["ACC0000/WID-0001", "ACC0000/WID-0003"]
    assert set(exceptions["category"]) == {"PRICING"}
    assert set(exceptions["account_code"]) == {"ACC0000"}
    wid1, wid3 = exceptions["message"]
    assert "at 10 the portal would charge £9.50 each, the ERP £9.00" in wid1
    assert "PL-C-ACME over PL-TRADE" in wid1
    assert "the portal cannot price it (SKU 'WID-0003' has no price)" in wid3
    assert price_probe.agreeing_keys(compared) == ["ACC0000/WID-0002"]


def test_half_a_cent_of_float_noise_is_not_a_difference() -> None:
    accounts = customers(1)
    sample = price_probe.probe_accounts(accounts, PRICE_LISTS, on=date(2026, 3, 1), share=1)
    lines = price_probe.probe_lines(sample, ITEMS, on=date(2026, 3, 1), max_skus=1)
    erp = resolve_unit_prices(
        lines.assign(line_key=np.arange(len(lines))), accounts, PRICE_LISTS, ITEMS
    )
    portal = lines.assign(unit_price=erp["erp_unit_price"].to_numpy() + 1e-9, error=None)
    compared = price_probe.compare_prices(
        lines, portal, customers=accounts, price_lists=PRICE_LISTS, items=ITEMS
    )
    assert not compared["differs"].any()


def test_probe_settings_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        price_probe.probe_accounts(customers(1), PRICE_LISTS, on=date(2026, 3, 1), share=1.5)
    sample = price_probe.probe_accounts(customers(1), PRICE_LISTS, on=date(2026, 3, 1), share=1)
    with pytest.raises(ValueError, match="at least 1"):
        price_probe.probe_lines(sample, ITEMS, on=date(2026, 3, 1), max_skus=0)


def test_an_open_difference_is_asked_again_whatever_the_days_sample() -> None:
    queue = pd.DataFrame(
        {
            "entity": ["customer_price", "customer_price", "price_list"],
            "entity_key": ["ACC0002/WID-0003", "ACC0002/GONE/1", "PL-TRADE/WID-0001"],
            "reason_code": ["PORTAL_PRICE_DIFFERS", "PORTAL_PRICE_DIFFERS", "PORTAL_REJECTED_ROW"],
            "status": ["open", "approved", "open"],
        }
    )
    recheck = price_probe.open_probe_pairs(queue)
    assert recheck.values.tolist() == [["ACC0002", "WID-0003"], ["ACC0002", "GONE/1"]]

    on = date(2026, 3, 1)
    sample = price_probe.probe_accounts(
        customers(3), PRICE_LISTS, on=on, share=0.0, recheck=recheck
    )
    assert sample["account_code"].tolist() == ["ACC0000", "ACC0002"]  # own list, and rechecked
    lines = price_probe.probe_lines(sample, ITEMS, on=on, max_skus=1, recheck=recheck)
    rechecked = lines[lines["account_code"] == "ACC0002"]
    # Its open SKUs on top of the cap; one the ERP no longer prices is asked at 1.
    assert set(map(tuple, rechecked[["sku", "quantity"]].values.tolist())) >= {
        ("WID-0003", 1),
        ("GONE/1", 1),
    }
