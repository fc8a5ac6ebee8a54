"""SparkLayer's data limits (contract §1): a sync that would pass a hard limit sends nothing new
of that kind and says so in one exception naming the limit; past a recommended limit it warns.

The pure checks are tested on frames; the syncs on the real simulator, ERP and audit file, with
the pipeline's hard limit lowered to the seed's size (the simulator keeps SparkLayer's own, as
the real portal would), so one more record is one too many.
"""

from __future__ import annotations

import pandas as pd
import pytest

from b2b_pipeline.connectors.sparklayer.wire import HARD_LIMITS
from b2b_pipeline.demo.erp_seed import NOTABLE_ACCOUNTS
from b2b_pipeline.domain import portal_limits as limits

TRADE = NOTABLE_ACCOUNTS["trade"]  # CUST0001, on PL-TRADE-GBP
CREATE_LIST = "POST /api/v1/price-lists"
PRICING = "/api/v1/price-lists/{slug}/pricing"


# --- the pure checks ----------------------------------------------------------------------


def test_within_the_recommended_limits_nothing_is_said() -> None:
    checked = limits.check_limits({"price_lists": 9_000, "customers": 100_000})
    assert limits.exceeded(checked) == set()
    assert limits.limit_warnings(checked) == []
    assert limits.limit_exceptions(checked, entity="price_list").empty


def test_past_a_recommended_limit_the_sync_only_warns() -> None:
    checked = limits.check_limits({"products": 30_000, "customer_groups": 50})
    assert limits.exceeded(checked) == set()
    (warning,) = limits.limit_warnings(checked)
    assert "30,000 distinct priced SKUs" in warning and "recommended 25,000" in warning
    assert limits.limit_exceptions(checked, entity="price_list").empty


def test_past_a_hard_limit_one_exception_names_the_limit_the_count_and_what_to_do() -> None:
    checked = limits.check_limits({"price_lists": 15_001, "products": 12})
    assert limits.exceeded(checked) == {"price_lists"}
    assert limits.limit_warnings(checked) == []  # past the hard limit is not a mere warning

    (row,) = limits.limit_exceptions(checked, entity="price_list").to_dict("records")
    assert (row["reason_code"], row["category"]) == ("PORTAL_LIMIT_EXCEEDED", "DATA")
    assert (row["entity"], row["entity_key"]) == ("price_list", "portal limit: price_lists")
    for named in ("15,001 price lists", "hard limit of 15,000", "no new price list"):
        assert named in row["message"], named
    assert "\n" not in row["message"] and "Error" not in row["message"]


def test_an_unknown_limit_is_refused() -> None:
    with pytest.raises(KeyError, match="no portal limit named"):
        limits.check_limits({"warehouses": 3})


def test_priced_skus_after_a_sync_count_what_the_sync_leaves_alone() -> None:
    erp = pd.DataFrame({"price_list_code": ["PL-A", "PL-A", "PL-B"], "sku": ["S1", "S2", "S1"]})
    portal = pd.DataFrame(
        {
            "price_list_slug": ["PL-A", "PL-A", "PL-MANUAL", "PL-B"],
            "sku": ["S1", "GONE", "HAND-MADE", "HELD"],
        }
    )
    held = pd.DataFrame({"price_list_code": ["PL-B"], "sku": ["HELD"]})
    # S1 and S2 from the ERP, HAND-MADE on a list the ERP does not manage, HELD kept; GONE is
    # removed by the sync.
    assert limits.priced_skus_after_sync(erp, portal, ["PL-A", "PL-B"], held) == 4
    assert limits.projected_count(["PL-A", "PL-MANUAL"], ["PL-A", "PL-B"]) == 3


def test_only_skus_new_to_the_portal_are_held_by_the_products_limit() -> None:
    changes = pd.DataFrame(
        {
            "price_list_slug": ["PL-A", "PL-B", "PL-A"],
            "sku": ["NEW", "S1", "S1"],
            "change": ["added", "added", "changed"],
        }
    )
    portal = pd.DataFrame({"price_list_slug": ["PL-A"], "sku": ["S1"]})
    assert limits.new_skus(changes, portal).tolist() == [True, False, False]


def test_a_customer_with_too_many_addresses_is_held_alone() -> None:
    bodies = [{"addresses": [{}] * 501}, {"addresses": [{}] * 500}, None]
    assert limits.addresses_over_limit(bodies) == [True, False, False]
    (row,) = limits.address_exceptions(
        pd.DataFrame({"account_code": ["CUST0042"], "addresses": [501]})
    ).to_dict("records")
    assert (row["entity_key"], row["account_code"]) == ("CUST0042", "CUST0042")
    assert "501 addresses" in row["message"] and "500 per customer" in row["message"]


# --- the syncs ----------------------------------------------------------------------------


def open_limit_exceptions(pipeline) -> pd.DataFrame:
    queue = pipeline.audit.exceptions(status="open")
    return queue[queue["reason_code"] == "PORTAL_LIMIT_EXCEEDED"]


def portal_lists(pipeline) -> set[str]:
    return {pl["slug"] for pl in pipeline.portal.iter_price_lists()}


def test_a_price_sync_past_the_price_list_limit_creates_no_list_and_still_updates_prices(
    pipeline, monkeypatch: pytest.MonkeyPatch
):
    pipeline.run("price_sync_job")
    lists_now = len(portal_lists(pipeline))
    monkeypatch.setitem(HARD_LIMITS, "price_lists", lists_now)
    # The ERP gives CUST0001 its own list (one list too many) and reprices a trade SKU.
    pipeline.erp.upsert_price_lists(
        pd.DataFrame(
            [
                {
                    "code": "PL-C-CUST0001",
                    "name": "Contract prices: Harrow Building Supplies Ltd",
                    "currency": "GBP",
                    "parent_code": "PL-TRADE-GBP",
                }
            ]
        )
    )
    pipeline.erp.set_price("PL-C-CUST0001", "WID-0001", 1, "20.00")
    pipeline.erp.set_customer_group(TRADE, "trade", "PL-C-CUST0001")
    pipeline.erp.set_price("PL-TRADE-GBP", "BRK-0001", 1, "11.11")
    pipeline.reset_calls()

    refused = pipeline.run("price_sync_job")

    calls = pipeline.calls()
    assert CREATE_LIST not in calls["by_endpoint"]
    patched = [
        c["path"] for c in calls["log"] if c["endpoint"] == PRICING and c["method"] == "PATCH"
    ]
    assert patched == ["/api/v1/price-lists/PL-TRADE-GBP/pricing"]  # existing lists still update
    assert "PL-C-CUST0001" not in portal_lists(pipeline)
    customer = pipeline.portal.get_customer(TRADE)
    assert customer["price_lists"] == ["PL-TRADE-GBP"]  # never pointed at a list not there
    (exception,) = open_limit_exceptions(pipeline).to_dict("records")
    assert exception["category"] == "DATA"
    assert exception["entity_key"] == "portal limit: price_lists"
    assert f"{lists_now + 1:,} price lists" in exception["message"]
    meta = pipeline.metadata(refused, "portal_price_lists")
    assert meta["refused_by_portal_limit"] == ["price_lists"]
    assert pipeline.portal.get_sync_log("b2b-pipeline", "pricing")["last_full_sync_succeeded"] is (
        False
    )

    # Back within the limit (here: SparkLayer raised it), the next sync catches up by itself.
    monkeypatch.setitem(HARD_LIMITS, "price_lists", lists_now + 1)
    pipeline.run("price_sync_job")
    assert "PL-C-CUST0001" in portal_lists(pipeline)
    assert pipeline.portal.get_customer(TRADE)["price_lists"] == ["PL-C-CUST0001", "PL-TRADE-GBP"]
    assert open_limit_exceptions(pipeline).empty
    closed = pipeline.audit.exception(exception["exception_id"])
    assert (closed["status"], closed["resolved_by"]) == ("resolved", "pipeline")


def test_a_price_sync_past_the_product_limit_prices_no_new_sku_but_reprices_the_others(
    pipeline, monkeypatch: pytest.MonkeyPatch
):
    pipeline.run("price_sync_job")
    skus_now = pipeline.erp.read_price_list_items()["sku"].nunique()
    monkeypatch.setitem(HARD_LIMITS, "products", skus_now)
    pipeline.erp.upsert_products(
        pd.DataFrame([{"sku": "NEW-0001", "name": "New bracket", "active": True}])
    )
    pipeline.erp.set_price("PL-TRADE-GBP", "NEW-0001", 1, "3.50")
    pipeline.erp.set_price("PL-TRADE-GBP", "BRK-0001", 1, "11.11")
    pipeline.reset_calls()

    result = pipeline.run("price_sync_job")

    trade = {item["sku"]: item for item in pipeline.portal.iter_pricing("PL-TRADE-GBP")}
    assert "NEW-0001" not in trade
    assert trade["BRK-0001"]["pricing"][0]["price"] == 11.11
    meta = pipeline.metadata(result, "portal_price_lists")
    assert (meta["refused_by_portal_limit"], meta["skus_held_by_portal_limit"]) == (["products"], 1)
    (exception,) = open_limit_exceptions(pipeline).to_dict("records")
    assert exception["entity_key"] == "portal limit: products"
    assert f"{skus_now + 1:,} distinct priced SKUs" in exception["message"]

    monkeypatch.setitem(HARD_LIMITS, "products", skus_now + 1)
    pipeline.run("price_sync_job")  # the held SKU differs from the snapshot: sent now
    assert "NEW-0001" in {item["sku"] for item in pipeline.portal.iter_pricing("PL-TRADE-GBP")}
    assert open_limit_exceptions(pipeline).empty


def test_a_customer_sync_past_the_customer_limit_creates_no_one_but_still_holds_credit(
    pipeline, monkeypatch: pytest.MonkeyPatch
):
    pipeline.run("price_sync_job")
    customers_now = len(list(pipeline.portal.iter_customers()))
    monkeypatch.setitem(HARD_LIMITS, "customers", customers_now)
    monkeypatch.setitem(limits.RECOMMENDED_LIMITS, "customer_groups", 2)
    new_account = (
        pipeline.erp.read_customers()
        .iloc[[0]]
        .assign(
            account_code="CUST0900",
            name="Wessex Timber Merchants Ltd",
            email="orders@wessex-timber.example",
        )
    )
    pipeline.erp.upsert_customers(new_account.drop(columns=["updated_at"]))
    pipeline.erp.set_credit_hold(TRADE, True)

    result = pipeline.run("customer_sync_job")

    assert pipeline.portal.get_customer("CUST0900") is None
    assert pipeline.portal.get_customer(TRADE)["group"] == "on-hold"  # the hold still went
    meta = pipeline.metadata(result, "portal_customers")
    assert (meta["refused_by_portal_limit"], meta["held_by_portal_limit"]) == (["customers"], 1)
    assert meta["credit_holds_applied"] == 1
    (exception,) = open_limit_exceptions(pipeline).to_dict("records")
    assert (exception["entity"], exception["category"]) == ("customer", "DATA")
    assert f"{customers_now + 1:,} customers" in exception["message"]
    assert "credit holds included" in exception["message"]
    # Past a recommended limit only: a warning in the run's metadata, no exception.
    (warning,) = pipeline.metadata(result, "portal_customer_groups")["portal_limit_warnings"]
    assert "customer groups" in warning and "recommended 2" in warning

    monkeypatch.setitem(HARD_LIMITS, "customers", customers_now + 1)
    pipeline.run("customer_sync_job")
    assert pipeline.portal.get_customer("CUST0900")["company_name"] == "Wessex Timber Merchants Ltd"
    assert open_limit_exceptions(pipeline).empty
