"""Price lists and the portal's price rule in the simulator (contract v2 §3), over real HTTP.

The rule that matters most for the pipeline: the portal charges the **first** list in the
customer's order that prices the SKU, even when a later list has a cheaper break, so the sync
must order (or fill) a customer's lists accordingly; ``fetch-customer-pricing`` is how the price
probe asks the portal what a buyer would pay.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from b2b_pipeline.simulator.pricing import buyer_price
from b2b_pipeline.simulator.server import SimulatorServer
from b2b_pipeline_tests.test_simulator import (
    BLANK_BREAK,
    PortalApi,
    breaks,
    create_price_list,
    open_portal_api,
    order,
    problem,
    properties,
    seed_trade_customer,
)

PRICING = "/api/v1/price-lists/{slug}/pricing"
FETCH = "/api/v1/fetch-customer-pricing"


@pytest.fixture
def api(simulator: SimulatorServer) -> Iterator[PortalApi]:
    yield from open_portal_api(simulator)


def pricing(api: PortalApi, slug: str) -> list[dict]:
    response = api.call("GET", PRICING.format(slug=slug))
    if response.status_code == 204:
        return []
    assert response.status_code == 200, response.text
    return response.json()


# -- the rule (one function) ---------------------------------------------------------------------
FIRST = ("customer-list", {"BOLT": [(1, 2.40), (50, 2.00)], "HIGH": [(100, 1.00)]})
GROUP = ("group-list", {"BOLT": [(1, 2.50), (10, 2.20), (100, 1.95)], "HIGH": [(1, 3.00)]})


@pytest.mark.parametrize(
    ("sku", "quantity", "slug", "unit"),
    [
        ("BOLT", 1, "customer-list", "2.40"),
        ("BOLT", 49, "customer-list", "2.40"),
        ("BOLT", 50, "customer-list", "2.00"),
        # A cheaper break in a later list is never looked at once a list prices the SKU.
        ("BOLT", 100, "customer-list", "2.00"),
        # A first list whose breaks all start above the quantity does not price it there.
        ("HIGH", 10, "group-list", "3.00"),
        ("HIGH", 100, "customer-list", "1.00"),
    ],
)
def test_the_first_list_that_prices_the_sku_at_that_quantity_wins(sku, quantity, slug, unit):
    price = buyer_price([FIRST, GROUP], sku, quantity, 0)
    assert price is not None and price.slug == slug and price.unit_price == Decimal(unit)


def test_the_discount_applies_after_the_break_and_rounds_half_up():
    price = buyer_price([("l", {"S": [(1, 0.25)]})], "S", 1, 10)
    assert price is not None and price.list_price == Decimal("0.25")
    assert price.unit_price == Decimal("0.23")  # 0.225 -> 0.23, half-up
    assert buyer_price([FIRST, GROUP], "NOWHERE", 1, 0) is None
    assert buyer_price([], "BOLT", 1, 0) is None


def test_an_order_takes_the_first_list_even_where_a_later_list_has_a_lower_break(api):
    seed_trade_customer(api, discount_percentage=0)
    # At 100, the group list (second) has 1.95 but the customer list (first) prices BOLT-10
    # at 2.00: the portal charges 2.00, where the ERP's lowest-price rule would give 1.95.
    placed = order(api, lines=[{"sku": "BOLT-10", "quantity": 100}])
    net = placed["packages"][0]["line_items"][0]["line_total"]["total_net"]
    assert net == {"number": "200.00", "currency": "GBP"}
    probe = {
        "customer_id": "ACME01",
        "customer_lookup_by": "platform",
        "line_items": [{"sku": "BOLT-10", "quantity": 100}],
    }
    [line] = api.call("POST", FETCH, probe).json()["line_items"]
    assert line["unit_price"] == {"number": "2.00", "currency": "GBP"}
    # Put the group list first and the same order costs 1.95 a unit.
    customer = api.call("GET", "/api/v2/customers/platform/ACME01").json()
    customer["price_lists"] = ["trade-gbp", "acme-special"]
    api.call("PUT", "/api/v2/customers/platform/ACME01", customer)
    [line] = api.call("POST", FETCH, probe).json()["line_items"]
    assert line["unit_price"]["number"] == "1.95"


# -- fetch-customer-pricing ----------------------------------------------------------------------
def test_fetch_customer_pricing_prices_every_line_by_the_portal_rule(api):
    customer = seed_trade_customer(api)  # 10% discount
    body = {
        "customer_id": customer["id"],
        "customer_lookup_by": "sparklayer",
        "line_items": [{"sku": "BOLT-10", "quantity": 60}, {"sku": "NUT-10", "quantity": 3}],
    }
    response = api.call("POST", FETCH, body)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "line_items": [
            {
                "sku": "BOLT-10",
                "quantity": 60,
                "unit_price": {"number": "1.80", "currency": "GBP"},
                "line_total": {"number": "108.00", "currency": "GBP"},
            },
            {
                "sku": "NUT-10",
                "quantity": 3,
                "unit_price": {"number": "0.36", "currency": "GBP"},
                "line_total": {"number": "1.08", "currency": "GBP"},
            },
        ]
    }
    by_email = {**body, "customer_id": "buyer@acme.example", "customer_lookup_by": "email"}
    assert api.call("POST", FETCH, by_email).json() == response.json()


def test_fetch_customer_pricing_is_207_when_some_skus_cannot_be_priced(api):
    seed_trade_customer(api)
    body = {
        "customer_id": "ACME01",
        "customer_lookup_by": "platform",
        "line_items": [{"sku": "GHOST", "quantity": 1}, {"sku": "NUT-10", "quantity": 1}],
    }
    response = api.call("POST", FETCH, body)
    assert response.status_code == 207
    ghost, nut = response.json()["line_items"]
    assert set(ghost) == {"sku", "quantity", "error"} and "GHOST" in ghost["error"]
    assert nut["unit_price"]["number"] == "0.36"


def test_fetch_customer_pricing_is_400_for_an_unknown_customer_or_one_with_no_lists(api):
    seed_trade_customer(api)
    lines = [{"sku": "NUT-10", "quantity": 1}]
    unknown = {"customer_id": "NOBODY", "customer_lookup_by": "platform", "line_items": lines}
    assert properties(problem(api.call("POST", FETCH, unknown), 400)) == {"customer_id"}
    api.call("PUT", "/api/v2/customers/platform/BARE", {"external_id": "BARE"})
    bare = {**unknown, "customer_id": "BARE"}
    document = problem(api.call("POST", FETCH, bare), 400)
    assert document["errors"][0]["code"] == "no-price-lists"


def test_fetch_customer_pricing_refuses_over_250_lines_and_bad_lines(api):
    seed_trade_customer(api)
    lines = [{"sku": "NUT-10", "quantity": 1}] * 251
    body = {"customer_id": "ACME01", "customer_lookup_by": "platform", "line_items": lines}
    assert problem(api.call("POST", FETCH, body), 400)["errors"][0]["code"] == "limit-exceeded"
    assert api.call("POST", FETCH, {**body, "line_items": lines[:250]}).status_code == 200
    bad = {**body, "customer_lookup_by": "accounting", "line_items": [{"sku": "NUT-10"}]}
    assert properties(problem(api.call("POST", FETCH, bad), 400)) == {
        "customer_lookup_by",
        "line_items[0].quantity",
    }


# -- price list pricing: reads -------------------------------------------------------------------
def test_pricing_is_read_whole_not_paged_sorted_by_sku(api):
    create_price_list(api, "big")
    path = PRICING.format(slug="big")
    for start in (0, 500, 1000):
        rows = [
            {"sku": f"SKU-{i:05d}", "pricing": breaks((1, 1.0))} for i in range(start, start + 500)
        ]
        assert api.call("PATCH", path, rows[::-1]).status_code == 204
    read = api.call("GET", path, page=2, page_size=10)  # paging parameters change nothing
    assert read.status_code == 200
    skus = [row["sku"] for row in read.json()]
    assert len(skus) == 1500 and skus == sorted(skus)


def test_an_empty_price_list_answers_204_with_no_body_and_an_unknown_one_404(api):
    create_price_list(api, "empty")
    empty = api.call("GET", PRICING.format(slug="empty"))
    assert empty.status_code == 204 and empty.content == b""
    document = problem(api.call("GET", PRICING.format(slug="nope")), 404)
    assert document["errors"][0]["code"] == "resource-id-not-found"
    problem(api.call("PATCH", PRICING.format(slug="nope"), []), 404)


# -- price list pricing: writes ------------------------------------------------------------------
def test_a_pricing_patch_changes_only_the_skus_sent_and_replaces_their_breaks(api):
    create_price_list(api, "trade-gbp")
    path = PRICING.format(slug="trade-gbp")
    first = [
        {"sku": "A", "pricing": breaks((1, 9.0), (10, 8.0))},
        {"sku": "B", "pricing": breaks((1, 5.0))},
        {"sku": "C", "pricing": breaks((1, 7.0))},
    ]
    assert api.call("PATCH", path, first).status_code == 204
    second = [{"sku": "A", "pricing": breaks((5, 8.5))}, {"sku": "B", "pricing": BLANK_BREAK}]
    response = api.call("PATCH", path, second)
    assert response.status_code == 204 and response.content == b""
    assert pricing(api, "trade-gbp") == [
        {"sku": "A", "pricing": [{"quantity": 5, "price": 8.5}]},  # breaks replaced, not merged
        {"sku": "C", "pricing": [{"quantity": 1, "price": 7.0}]},  # not sent: unchanged
    ]
    # Removing the last SKU leaves an empty list: 204 on read.
    api.call("PATCH", path, [{"sku": s, "pricing": BLANK_BREAK} for s in ("A", "C", "NEVER")])
    assert api.call("GET", path).status_code == 204
    assert api.sim("GET", "/state").json()["priced_skus"] == 0


def test_an_empty_pricing_array_or_a_blank_break_among_others_is_400(api):
    create_price_list(api, "trade-gbp")
    path = PRICING.format(slug="trade-gbp")
    api.call("PATCH", path, [{"sku": "A", "pricing": breaks((1, 9.0))}])
    rows = [
        {"sku": "A", "pricing": []},
        {"sku": "B", "pricing": [*breaks((1, 2.0)), {"quantity": None, "price": None}]},
    ]
    document = problem(api.call("PATCH", path, rows), 400)
    assert {(e["line"], e["field"]) for e in document["errors"]} == {
        (0, "pricing"),
        (1, "pricing[1]"),
    }
    assert "blank break" in document["errors"][0]["message"]
    assert pricing(api, "trade-gbp") == [{"sku": "A", "pricing": [{"quantity": 1, "price": 9.0}]}]


def test_invalid_price_rows_are_named_by_line_field_and_message_and_nothing_is_applied(api):
    create_price_list(api, "trade-gbp")
    rows = [
        {"sku": "GOOD-1", "pricing": breaks((1, 5.0))},
        {"sku": "BAD-PRICE", "pricing": breaks((1, -1.0))},
        {"sku": "GOOD-2", "pricing": breaks((1, 6.0))},
        {"sku": "BAD-QTY", "pricing": [{"quantity": 1.5, "price": 2.0}]},
        {"sku": "TWO-BREAKS-AT-1", "pricing": breaks((1, 2.0), (1, 3.0))},
        {"sku": "GOOD-1", "pricing": breaks((1, 5.0))},
    ]
    document = problem(api.call("PATCH", PRICING.format(slug="trade-gbp"), rows), 400)
    assert {(e["line"], e["field"]) for e in document["errors"]} == {
        (1, "pricing[0].price"),
        (3, "pricing[0].quantity"),
        (4, "pricing[1].quantity"),
        (5, "sku"),  # the same SKU twice in one call
    }
    assert all(e["code"] and e["message"] and e["property"] for e in document["errors"])
    assert api.call("GET", PRICING.format(slug="trade-gbp")).status_code == 204


def test_batch_update_pricing_writes_across_lists_with_204_and_names_unknown_lists(api):
    create_price_list(api, "a")
    create_price_list(api, "b")
    rows = [
        {"sku": "S1", "price_list_slug": "a", "pricing": breaks((1, 1.0))},
        {"sku": "S1", "price_list_slug": "b", "pricing": breaks((1, 2.0))},
        {"sku": "S2", "price_list_slug": "b", "pricing": breaks((1, 3.0))},
    ]
    response = api.call("PATCH", "/api/v1/batch-update-pricing", rows)
    assert response.status_code == 204 and response.content == b""
    assert [row["sku"] for row in pricing(api, "b")] == ["S1", "S2"]
    removal = [
        {"sku": "S2", "price_list_slug": "b", "pricing": BLANK_BREAK},
        {"sku": "S3", "price_list_slug": "ghost", "pricing": breaks((1, 1.0))},
    ]
    document = problem(api.call("PATCH", "/api/v1/batch-update-pricing", removal), 400)
    assert {(e["line"], e["field"]) for e in document["errors"]} == {(1, "price_list_slug")}
    assert [row["sku"] for row in pricing(api, "b")] == ["S1", "S2"]  # nothing applied
    assert api.call("PATCH", "/api/v1/batch-update-pricing", removal[:1]).status_code == 204
    assert [row["sku"] for row in pricing(api, "b")] == ["S1"]
