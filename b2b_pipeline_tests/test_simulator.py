"""The embedded SparkLayer simulator, spoken to over real HTTP with plain ``requests``.

These tests pin what the pipeline's client and the demo rely on: the contract's auth, limits
and error documents (contracts/sparklayer-api.md §1-7), the wire shapes of
docs/architecture.md, the portal's own order pricing, the fault injector's determinism and
the state file surviving a restart.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from b2b_pipeline.simulator.problems import ApiError
from b2b_pipeline.simulator.server import SimulatorServer
from b2b_pipeline.simulator.state import ResourceLocks
from b2b_pipeline_tests.conftest import CLIENT_ID, CLIENT_SECRET, SITE_ID


class PortalApi:
    """An authenticated ``requests`` session against the simulator, as a client would hold."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.session.headers.update({"Site-Id": SITE_ID, "Accept": "application/json"})
        self.authenticate()

    def authenticate(self) -> None:
        token = fetch_token(self.base_url).json()["access_token"]
        self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> requests.Response:
        return self.session.request(
            method, f"{self.base_url}{path}", json=body, params=params or None, timeout=10
        )

    def sim(self, method: str, path: str, body: Any = None) -> requests.Response:
        return requests.request(method, f"{self.base_url}/_sim{path}", json=body, timeout=10)


def fetch_token(base_url: str, secret: str = CLIENT_SECRET, site: str = SITE_ID):
    return requests.post(
        f"{base_url}/api/auth/token",
        json={"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": secret},
        headers={"Site-Id": site},
        timeout=10,
    )


@pytest.fixture
def api(simulator: SimulatorServer) -> Iterator[PortalApi]:
    portal_api = PortalApi(simulator.url)
    yield portal_api
    portal_api.session.close()


def problem(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    document = response.json()
    assert document["status"] == status
    assert {"title", "detail", "errors"} <= document.keys()
    return document


def properties(document: dict[str, Any]) -> set[str]:
    return {error["property"] for error in document["errors"]}


def breaks(*pairs: tuple[int, float]) -> list[dict[str, float]]:
    return [{"quantity": quantity, "price": price} for quantity, price in pairs]


def seed_trade_customer(api: PortalApi, **overrides: Any) -> dict[str, Any]:
    """A group list with quantity breaks, a customer-specific list on top, one customer."""
    api.call("POST", "/api/v1/customer-groups", {"slug": "trade", "name": "Trade"})
    for slug in ("trade-gbp", "acme-special"):
        api.call(
            "POST", "/api/v1/price-lists", {"slug": slug, "name": slug, "currency_code": "GBP"}
        )
    api.call(
        "PATCH",
        "/api/v1/price-lists/trade-gbp/pricing",
        [
            {"sku": "BOLT-10", "pricing": breaks((1, 2.50), (10, 2.20), (100, 1.95))},
            {"sku": "NUT-10", "pricing": breaks((1, 0.40))},
        ],
    )
    api.call(
        "PATCH",
        "/api/v1/price-lists/acme-special/pricing",
        [{"sku": "BOLT-10", "pricing": breaks((50, 2.00))}],
    )
    customer = {
        "external_id": "ACME01",
        "email": "buyer@acme.example",
        "company_name": "Acme Ltd",
        "accounting_id": "ACME01",
        "group": "trade",
        "price_lists": ["acme-special", "trade-gbp"],
        "discount_percentage": 10,
        "tax_exempt": False,
        **overrides,
    }
    response = api.call("PUT", "/api/v2/customers/platform/ACME01", customer)
    assert response.status_code == 201, response.text
    return response.json()


def place_order(api: PortalApi, **body: Any) -> requests.Response:
    order = {"customer": "ACME01", "status": "processing", "payment_method": "pay_on_account"}
    return api.sim("POST", "/orders", {**order, **body})


# -- authentication (§1) ---------------------------------------------------------------------
def test_wrong_client_secret_is_401_and_the_secret_is_not_echoed(simulator):
    response = fetch_token(simulator.url, secret="wrong-but-sensitive-value")
    document = problem(response, 401)
    assert "wrong-but-sensitive-value" not in response.text
    assert CLIENT_SECRET not in response.text
    assert document["errors"]


def test_token_is_only_valid_for_its_site(simulator):
    problem(fetch_token(simulator.url, site="another-site"), 401)
    missing_site = requests.post(
        f"{simulator.url}/api/auth/token",
        json={"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": "x"},
        timeout=10,
    )
    assert properties(problem(missing_site, 400)) == {"Site-Id"}


def test_api_calls_need_a_bearer_token_and_a_site_id(api):
    assert api.call("GET", "/api/v1/stock-locations").status_code == 200
    no_site = requests.get(
        f"{api.base_url}/api/v1/stock-locations",
        headers={"Authorization": api.session.headers["Authorization"]},
        timeout=10,
    )
    assert properties(problem(no_site, 400)) == {"Site-Id"}
    no_token = requests.get(
        f"{api.base_url}/api/v1/stock-locations", headers={"Site-Id": SITE_ID}, timeout=10
    )
    problem(no_token, 401)


def test_tokens_expire_after_their_lifetime(api):
    api.sim("PUT", "/config", {"token_ttl_seconds": 0.3})
    api.authenticate()
    assert api.call("GET", "/api/v1/customer-groups").status_code == 200
    time.sleep(0.4)
    problem(api.call("GET", "/api/v1/customer-groups"), 401)
    api.authenticate()
    assert api.call("GET", "/api/v1/customer-groups").status_code == 200


def test_revoked_tokens_get_401_until_a_new_one_is_fetched(api):
    assert api.sim("POST", "/tokens/revoke").status_code == 200
    problem(api.call("GET", "/api/v1/customer-groups"), 401)
    api.authenticate()
    assert api.call("GET", "/api/v1/customer-groups").status_code == 200


def test_reject_all_tokens_makes_every_api_call_401(api):
    api.sim("PUT", "/faults", {"reject_all_tokens": True})
    problem(api.call("GET", "/api/v1/customer-groups"), 401)
    api.sim("PUT", "/faults", {})
    assert api.call("GET", "/api/v1/customer-groups").status_code == 200


def test_a_body_that_is_not_json_is_415_or_400(api):
    response = api.session.post(
        f"{api.base_url}/api/v1/price-lists",
        data="slug=x",
        timeout=10,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    problem(response, 415)
    broken = api.session.post(
        f"{api.base_url}/api/v1/price-lists",
        data="{not json",
        timeout=10,
        headers={"Content-Type": "application/json"},
    )
    assert properties(problem(broken, 400)) == {"body"}


# -- limits and validation -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "parameter", "over_limit"),
    [
        ("/api/v2/customers", "page_size", 251),
        ("/api/v2/price-lists", "page_size", 251),
        ("/api/v1/price-lists/trade-gbp/pricing", "page_size", 1001),
        ("/api/v1/purchases", "limit", 501),
    ],
)
def test_page_size_over_the_limit_is_400_naming_the_parameter(api, path, parameter, over_limit):
    api.call(
        "POST", "/api/v1/price-lists", {"slug": "trade-gbp", "name": "T", "currency_code": "GBP"}
    )
    assert api.call("GET", path, **{parameter: over_limit - 1}).status_code == 200
    document = problem(api.call("GET", path, **{parameter: over_limit}), 400)
    assert properties(document) == {parameter}


@pytest.mark.parametrize(
    ("path", "method", "row"),
    [
        ("/api/v1/price-lists/trade-gbp/pricing", "PATCH", {"pricing": breaks((1, 1.0))}),
        (
            "/api/v1/batch-update-pricing",
            "PATCH",
            {"price_list_slug": "trade-gbp", "pricing": breaks((1, 1.0))},
        ),
        (
            "/api/v1/batch-update-stock",
            "POST",
            {"stock_location_external_id": "default", "stock_level": 5},
        ),
    ],
)
def test_a_batch_of_501_rows_is_refused_and_500_accepted(api, path, method, row):
    api.call(
        "POST", "/api/v1/price-lists", {"slug": "trade-gbp", "name": "T", "currency_code": "GBP"}
    )
    rows = [{**row, "sku": f"SKU-{i:04d}"} for i in range(501)]
    document = problem(api.call(method, path, rows), 400)
    assert document["errors"][0]["code"] == "too-many-items"
    assert api.call(method, path, rows[:500]).status_code == 200


def test_invalid_price_rows_are_named_by_line_and_nothing_is_applied(api):
    api.call(
        "POST", "/api/v1/price-lists", {"slug": "trade-gbp", "name": "T", "currency_code": "GBP"}
    )
    rows = [
        {"sku": "GOOD-1", "pricing": breaks((1, 5.0))},
        {"sku": "BAD-PRICE", "pricing": breaks((1, -1.0))},
        {"sku": "GOOD-2", "pricing": breaks((1, 6.0))},
        {"sku": "BAD-QTY", "pricing": [{"quantity": 1.5, "price": 2.0}]},
        {"sku": "TWO-BREAKS-AT-1", "pricing": breaks((1, 2.0), (1, 3.0))},
        {"sku": "GOOD-1", "pricing": breaks((1, 5.0))},
    ]
    document = problem(api.call("PATCH", "/api/v1/price-lists/trade-gbp/pricing", rows), 400)
    assert {(e["line"], e["field"]) for e in document["errors"]} == {
        (1, "pricing[0].price"),
        (3, "pricing[0].quantity"),
        (4, "pricing[1].quantity"),
        (5, "sku"),  # the same SKU twice in one call
    }
    assert all(e["code"] and e["message"] and e["property"] for e in document["errors"])
    assert api.call("GET", "/api/v1/price-lists/trade-gbp/pricing").json() == []


def test_pricing_patch_replaces_breaks_removes_empty_skus_and_pages_sorted(api):
    api.call(
        "POST", "/api/v1/price-lists", {"slug": "trade-gbp", "name": "T", "currency_code": "GBP"}
    )
    path = "/api/v1/price-lists/trade-gbp/pricing"
    api.call("PATCH", path, [{"sku": s, "pricing": breaks((1, 9.0))} for s in ("C", "A", "B")])
    api.call(
        "PATCH", path, [{"sku": "A", "pricing": breaks((5, 8.0))}, {"sku": "B", "pricing": []}]
    )
    first = api.call("GET", path, page=1, page_size=1).json()
    second = api.call("GET", path, page=2, page_size=1).json()
    assert first == [{"sku": "A", "pricing": [{"quantity": 5, "price": 8.0}]}]
    assert [row["sku"] for row in second] == ["C"]
    assert api.call("GET", path, page=3, page_size=1).json() == []


def test_unknown_price_list_is_404(api):
    response = api.call("PATCH", "/api/v1/price-lists/nope/pricing", [])
    assert problem(response, 404)["errors"][0]["code"] == "resource-id-not-found"
    problem(api.call("GET", "/api/v1/price-lists/nope/pricing"), 404)


def test_price_list_fields_are_checked(api):
    body = {"slug": "x" * 31, "name": "n" * 65, "currency_code": "POUNDS"}
    document = problem(api.call("POST", "/api/v1/price-lists", body), 400)
    assert properties(document) == {"slug", "name", "currency_code"}


def test_put_customer_by_platform_with_another_external_id_is_id_mismatch(api):
    body = {"external_id": "OTHER", "email": "a@b.example"}
    document = problem(api.call("PUT", "/api/v2/customers/platform/ACME01", body), 400)
    assert document["errors"][0]["code"] == "idMismatch"
    assert api.call("GET", "/api/v2/customers/platform/ACME01").status_code == 404


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/price-lists", {"slug": "trade-gbp", "name": "T", "currency_code": "GBP"}),
        ("/api/v1/customer-groups", {"slug": "trade", "name": "Trade"}),
        ("/api/v1/stock-locations", {"name": "Leeds", "external_id": "LEEDS"}),
    ],
)
def test_creating_a_duplicate_is_409_resource_already_exists(api, path, body):
    assert api.call("POST", path, body).status_code == 201
    document = problem(api.call("POST", path, body), 409)
    assert document["errors"][0]["code"] == "resource-already-exists"


def test_customers_are_created_replaced_and_paged(api):
    seed_trade_customer(api)
    created = api.call("GET", "/api/v2/customers/platform/ACME01").json()
    assert created["accounting_id"] == "ACME01" and created["price_lists"][0] == "acme-special"
    replacement = {"external_id": "ACME01", "email": "new@acme.example", "group": "trade"}
    replaced = api.call("PUT", "/api/v2/customers/platform/ACME01", replacement)
    assert replaced.status_code == 200
    body = replaced.json()
    assert body["id"] == created["id"] and body["accounting_id"] is None  # a full replace
    assert body["updated_at"] > created["updated_at"]
    assert api.call("GET", f"/api/v2/customers/sparklayer/{created['id']}").json() == body
    registered = api.sim(
        "POST", "/customers/register", {"company_name": "Self Ltd", "email": "s@x"}
    )
    assert registered.status_code == 201
    assert registered.json()["accounting_id"] is None and registered.json()["external_id"] is None
    # The same email signing up again is the same company, not a second one.
    again = api.sim("POST", "/customers/register", {"company_name": "Self Ltd", "email": "S@x"})
    assert again.status_code == 200 and again.json()["id"] == registered.json()["id"]
    page = api.call("GET", "/api/v2/customers", page=2, page_size=1).json()
    assert page["pagination"] == {"current_page": 2, "total_pages": 2, "page_size": 1, "total": 2}
    assert page["data"][0]["company_name"] == "Self Ltd"


def test_customer_pointing_at_unknown_group_or_list_is_400(api):
    body = {"external_id": "X1", "group": "ghost", "price_lists": ["nowhere"]}
    document = problem(api.call("PUT", "/api/v2/customers/platform/X1", body), 400)
    assert properties(document) == {"group", "price_lists[0]"}


# -- stock (§4) --------------------------------------------------------------------------------
def test_stock_levels_are_written_and_fetched_by_location(api):
    api.call("POST", "/api/v1/stock-locations", {"name": "Leeds", "external_id": "LEEDS"})
    rows = [
        {"stock_location_external_id": "default", "sku": "BOLT-10", "stock_level": 40},
        {
            "stock_location_external_id": "LEEDS",
            "sku": "BOLT-10",
            "stock_level": 7,
            "restock_date": "2025-02-01",
        },
    ]
    assert api.call("POST", "/api/v1/batch-update-stock", rows).status_code == 200
    query = {"skus": ["BOLT-10", "NO-STOCK"], "filter": {"all_stock_locations": False}}
    default_only = api.call("POST", "/api/v1/batch-fetch-stock", query).json()
    assert [(r["stock_location_external_id"], r["stock_level"]) for r in default_only] == [
        ("default", 40)
    ]
    query["filter"]["all_stock_locations"] = True
    everywhere = api.call("POST", "/api/v1/batch-fetch-stock", query).json()
    assert {(r["stock_location_external_id"], r["stock_level"]) for r in everywhere} == {
        ("default", 40),
        ("LEEDS", 7),
    }


def test_stock_batch_with_a_repeated_pair_or_unknown_location_applies_nothing(api):
    rows = [
        {"stock_location_external_id": "default", "sku": "A", "stock_level": 1},
        {"stock_location_external_id": "default", "sku": "A", "stock_level": 2},
        {"stock_location_external_id": "MARS", "sku": "B", "stock_level": 3},
    ]
    document = problem(api.call("POST", "/api/v1/batch-update-stock", rows), 400)
    assert {(e["line"], e["field"]) for e in document["errors"]} == {(1, "sku")}
    document = problem(api.call("POST", "/api/v1/batch-update-stock", [rows[0], rows[2]]), 400)
    assert {(e["line"], e["field"]) for e in document["errors"]} == {
        (1, "stock_location_external_id")
    }
    fetched = api.call("POST", "/api/v1/batch-fetch-stock", {"skus": ["A", "B"]}).json()
    assert fetched == []


# -- sync log (§6) -----------------------------------------------------------------------------
def test_sync_log_round_trip_and_unique_external_ids(api):
    path = "/api/v1/sync-log/b2b-pipeline/customers"
    problem(api.call("GET", path), 404)
    body = {
        "started_full_sync": "2025-01-31T02:00:00Z",
        "last_full_sync": "2025-01-31T02:03:00Z",
        "last_full_sync_succeeded": False,
        "errors": [{"external_id": "ACME01", "message": "unknown group"}],
    }
    assert api.call("PUT", path, body).status_code == 200
    assert api.call("GET", path).json()["errors"] == body["errors"]
    body["errors"] = body["errors"] * 2
    assert properties(problem(api.call("PUT", path, body), 400)) == {"errors[1].external_id"}


# -- faults and call counting ------------------------------------------------------------------
def test_rate_limit_answers_429_with_retry_after_in_whole_seconds(api):
    api.sim("PUT", "/faults", {"requests_per_second": 0.5, "burst": 2})
    statuses = [api.call("GET", "/api/v1/customer-groups") for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert int(statuses[2].headers["Retry-After"]) >= 1
    problem(statuses[2], 429)


def _fault_run(api: PortalApi, seed: int) -> list[tuple[int, bool]]:
    """Statuses of a fixed mix of reads and writes, and whether each 2xx body parsed."""
    api.sim("POST", "/reset")
    api.sim(
        "PUT",
        "/faults",
        {"error_rate": 0.2, "conflict_rate": 0.3, "malformed_rate": 0.25, "seed": seed},
    )
    outcomes = []
    for i in range(40):
        if i % 2:
            response = api.call("GET", "/api/v1/stock-locations")
        else:
            body = {"name": f"Site {i}", "external_id": f"SITE-{i}"}
            response = api.call("POST", "/api/v1/stock-locations", body)
        try:
            response.json()
            parsed = True
        except json.JSONDecodeError:
            parsed = False
        outcomes.append((response.status_code, parsed))
    return outcomes


def test_the_same_seed_gives_the_same_faults(api):
    first = _fault_run(api, seed=11)
    assert _fault_run(api, seed=11) == first
    assert _fault_run(api, seed=12) != first
    statuses = {status for status, _ in first}
    assert statuses & {500, 502, 503} and 409 in statuses and 200 in statuses
    assert (200, False) in first  # a malformed 200 body
    # Conflicts are injected on writes only (even calls); reads never see a 409.
    assert all(status != 409 for status, _ in first[1::2])


def test_fail_next_fails_exactly_the_next_matching_calls(api):
    rule = {"method": "GET", "endpoint": "/api/v1/purchases", "status": 503, "count": 2}
    api.sim("PUT", "/faults", {"fail_next": [rule]})
    assert api.call("GET", "/api/v1/customer-groups").status_code == 200
    statuses = [api.call("GET", "/api/v1/purchases").status_code for _ in range(3)]
    assert statuses == [503, 503, 200]


def test_faults_never_apply_to_sim_endpoints(api):
    api.sim("PUT", "/faults", {"error_rate": 1.0, "requests_per_second": 0.01, "burst": 1})
    for _ in range(3):
        assert api.sim("GET", "/state").status_code == 200
    assert api.call("GET", "/api/v1/customer-groups").status_code in (500, 502, 503)


def test_every_api_call_is_counted_with_its_status(api):
    api.sim("DELETE", "/calls")
    api.authenticate()
    api.call("GET", "/api/v1/price-lists/missing/pricing")
    api.call("POST", "/api/v1/price-lists", {"slug": "a", "name": "A", "currency_code": "GBP"})
    api.call("PATCH", "/api/v1/price-lists/a/pricing", [{"sku": "S", "pricing": breaks((1, 1))}])
    api.sim("GET", "/state")  # not an API call
    calls = api.sim("GET", "/calls").json()
    assert calls["total"] == 4
    assert calls["by_endpoint"] == {
        "POST /api/auth/token": 1,
        "GET /api/v1/price-lists/{slug}/pricing": 1,
        "POST /api/v1/price-lists": 1,
        "PATCH /api/v1/price-lists/{slug}/pricing": 1,
    }
    assert [(c["status"], c["items"]) for c in calls["log"]] == [
        (200, None),
        (404, None),
        (201, None),
        (200, 1),
    ]
    assert calls["log"][1]["path"] == "/api/v1/price-lists/missing/pricing"
    assert api.sim("DELETE", "/calls").json()["total"] == 0


def test_a_second_write_while_one_is_in_progress_is_a_conflict():
    locks = ResourceLocks()
    key = ("price-list", "trade-gbp")
    with locks.hold(key):
        with pytest.raises(ApiError) as refused, locks.hold(key):
            pass
        with locks.hold(("price-list", "other")):
            pass  # another resource is not blocked
    assert refused.value.status == 409
    with locks.hold(key):
        pass  # released after the first write


# -- buyer orders and purchases (§5, §7) -------------------------------------------------------
def test_order_is_priced_from_breaks_across_lists_with_discount_and_tax(api):
    seed_trade_customer(api)
    response = place_order(
        api, lines=[{"sku": "BOLT-10", "quantity": 60}, {"sku": "NUT-10", "quantity": 3}]
    )
    assert response.status_code == 201, response.text
    order = response.json()
    bolt, nut = order["line_items"]
    # BOLT-10 at 60: breaks 2.50 (1), 2.20 (10) and the customer list's 2.00 (50) -> 2.00,
    # less 10% -> 1.80; 60 x 1.80 = 108.00 net, 21.60 VAT.
    assert bolt["unit_price"] == {"number": "1.80", "currency": "GBP"}
    assert bolt["line_total"]["total_net"]["number"] == "108.00"
    assert bolt["line_total"]["discount_net"]["number"] == "12.00"
    assert bolt["line_total"]["total_tax"]["number"] == "21.60"
    # NUT-10: 0.40 less 10% = 0.36; 3 x 0.36 = 1.08; VAT round(0.216) = 0.22.
    assert nut["unit_price"]["number"] == "0.36"
    assert nut["line_total"]["total_tax"]["number"] == "0.22"
    assert order["calculated_total"] == {"number": "130.90", "currency": "GBP"}
    assert order["tax_lines"] == [
        {"title": "VAT", "amount": {"number": "21.82", "currency": "GBP"}, "rate": 20.0}
    ]
    assert order["type"] == "order" and order["payment_status"] == "pending"
    assert order["total_paid"]["number"] == "0.00"
    assert order["customer_identifiers"]["platform"] == "ACME01"
    assert order["purchase_identifiers"]["visible"] == "SL-100001"
    fetched = api.call("GET", f"/api/v1/purchases/sparklayer/{order['id']}").json()
    assert fetched == order


def test_tax_exempt_card_order_has_no_tax_and_is_paid(api):
    seed_trade_customer(api, tax_exempt=True, discount_percentage=0)
    order = place_order(
        api, payment_method="card", lines=[{"sku": "BOLT-10", "quantity": 10}]
    ).json()
    assert order["line_items"][0]["unit_price"]["number"] == "2.20"
    assert order["calculated_total"]["number"] == "22.00"
    assert order["tax_lines"] == [] and order["tax_exempt"] is True
    assert order["payment_status"] == "paid" and order["total_paid"]["number"] == "22.00"


def test_standard_tax_rate_is_configurable(api):
    seed_trade_customer(api, discount_percentage=0)
    api.sim("PUT", "/config", {"standard_tax_rate": 5})
    order = place_order(api, lines=[{"sku": "NUT-10", "quantity": 10}]).json()
    assert order["line_items"][0]["line_total"]["total_tax"]["number"] == "0.20"


def test_buyer_given_unit_price_is_used_as_is(api):
    seed_trade_customer(api)
    order = place_order(api, lines=[{"sku": "ANY-SKU", "quantity": 2, "unit_price": 3.333}]).json()
    assert order["line_items"][0]["unit_price"]["number"] == "3.33"
    # The unit price is rounded first, then multiplied: 2 x 3.33, not round(6.666).
    assert order["line_items"][0]["line_total"]["total_net"]["number"] == "6.66"


def test_unknown_sku_without_unit_price_is_400(api):
    seed_trade_customer(api)
    response = place_order(
        api, lines=[{"sku": "BOLT-10", "quantity": 1}, {"sku": "GHOST", "quantity": 1}]
    )
    assert properties(problem(response, 400)) == {"lines[1].sku"}
    assert api.sim("GET", "/state").json()["purchases"] == 0


def test_ordering_disabled_group_is_refused_with_403(api):
    seed_trade_customer(api)
    api.call(
        "POST",
        "/api/v1/customer-groups",
        {"slug": "on-hold", "name": "On hold", "ordering_enabled": False},
    )
    customer = api.call("GET", "/api/v2/customers/platform/ACME01").json()
    held = {**customer, "group": "on-hold"}
    assert api.call("PUT", "/api/v2/customers/platform/ACME01", held).status_code == 200
    response = place_order(api, customer=customer["id"], lines=[{"sku": "NUT-10", "quantity": 1}])
    assert problem(response, 403)["errors"][0]["code"] == "ordering-disabled"


def test_pay_on_account_over_the_credit_limit_is_refused_with_403(api):
    terms = {"credit_limit": 100, "currency": "GBP", "net_terms": 30, "balance": 90}
    seed_trade_customer(api, payment_on_account=terms, discount_percentage=0)
    small = place_order(api, lines=[{"sku": "NUT-10", "quantity": 10}])  # 4.80 gross
    assert small.status_code == 201
    large = place_order(api, lines=[{"sku": "BOLT-10", "quantity": 10}])  # 26.40 gross
    assert problem(large, 403)["errors"][0]["code"] == "credit-limit-exceeded"
    by_card = place_order(api, payment_method="card", lines=[{"sku": "BOLT-10", "quantity": 10}])
    assert by_card.status_code == 201


def test_purchases_are_paged_by_update_time_and_filtered_by_updated_since(api):
    seed_trade_customer(api)
    ids = [
        place_order(api, status=status, lines=[{"sku": "NUT-10", "quantity": 1}]).json()["id"]
        for status in ("processing", "quote", "confirmed", "cart", "draft")
    ]
    first_page = api.call("GET", "/api/v1/purchases", limit=2, offset=0).json()
    rest = api.call("GET", "/api/v1/purchases", limit=2, offset=2).json()
    last = api.call("GET", "/api/v1/purchases", limit=2, offset=4).json()
    assert [p["id"] for p in first_page + rest + last] == ids
    assert len(last) == 1  # a short page is the last
    assert [p["type"] for p in first_page + rest] == ["order", "quote", "order", "cart"]
    assert first_page[1]["dates"]["placed_at"] is None

    confirmed = api.sim("PATCH", f"/purchases/{ids[1]}", {"status": "confirmed"}).json()
    assert confirmed["type"] == "order" and confirmed["dates"]["placed_at"] is not None
    since = confirmed["dates"]["updated_at"]
    assert since > rest[-1]["dates"]["updated_at"]
    changed = api.call("GET", "/api/v1/purchases", updated_since=since).json()
    assert [p["id"] for p in changed] == [ids[1]]
    everything = api.call("GET", "/api/v1/purchases").json()
    assert [p["id"] for p in everything] == [ids[0], *ids[2:], ids[1]]
    keys = [(p["dates"]["updated_at"], p["id"]) for p in everything]
    assert keys == sorted(keys)
    problem(api.call("GET", "/api/v1/purchases", updated_since="yesterday"), 400)


def test_erp_order_number_is_written_back_and_found_by_internal_id(api):
    seed_trade_customer(api)
    order = place_order(api, lines=[{"sku": "NUT-10", "quantity": 1}]).json()
    order["purchase_identifiers"]["internal"] = "42"
    path = f"/api/v1/purchases/sparklayer/{order['id']}"
    updated = api.call("PUT", path, order)
    assert updated.status_code == 200, updated.text
    assert updated.json()["dates"]["updated_at"] > order["dates"]["updated_at"]
    found = api.call("GET", "/api/v1/purchases/internal/42").json()
    assert found["id"] == order["id"] and found["line_items"] == order["line_items"]
    other = place_order(api, lines=[{"sku": "NUT-10", "quantity": 1}]).json()
    other["purchase_identifiers"]["internal"] = "42"
    clash = api.call("PUT", f"/api/v1/purchases/sparklayer/{other['id']}", other)
    assert problem(clash, 409)["errors"][0]["code"] == "resource-already-exists"


def test_injected_conflicts_hit_writes_only(api):
    seed_trade_customer(api)
    order = place_order(api, lines=[{"sku": "NUT-10", "quantity": 1}]).json()
    api.sim("PUT", "/faults", {"conflict_rate": 1.0})
    path = f"/api/v1/purchases/sparklayer/{order['id']}"
    assert api.call("GET", path).status_code == 200
    problem(api.call("PUT", path, order), 409)


# -- persistence -------------------------------------------------------------------------------
def test_state_survives_a_restart(tmp_path: Path):
    state_path = tmp_path / "sim-state.bin"
    credentials = {"site_id": SITE_ID, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    with SimulatorServer(state_path=state_path, **credentials) as first:
        api = PortalApi(first.url)
        seed_trade_customer(api)
        api.call(
            "POST",
            "/api/v1/batch-update-stock",
            [{"stock_location_external_id": "default", "sku": "BOLT-10", "stock_level": 3}],
        )
        order = place_order(api, lines=[{"sku": "BOLT-10", "quantity": 60}]).json()
        before = {
            "state": api.sim("GET", "/state").json(),
            "pricing": api.call("GET", "/api/v1/price-lists/trade-gbp/pricing").json(),
            "customers": api.call("GET", "/api/v2/customers").json(),
        }
    assert state_path.exists()
    with pytest.raises(requests.ConnectionError):  # stopped means stopped, keep-alive or not
        api.call("GET", "/api/v1/customer-groups")
    with SimulatorServer(state_path=state_path, **credentials) as second:
        api = PortalApi(second.url)
        after = {
            "state": api.sim("GET", "/state").json(),
            "pricing": api.call("GET", "/api/v1/price-lists/trade-gbp/pricing").json(),
            "customers": api.call("GET", "/api/v2/customers").json(),
        }
        assert after == before
        assert api.call("GET", f"/api/v1/purchases/sparklayer/{order['id']}").json() == order
        stock = api.call("POST", "/api/v1/batch-fetch-stock", {"skus": ["BOLT-10"]}).json()
        assert stock[0]["stock_level"] == 3
        # Numbering and the change clock carry on where they stopped.
        again = place_order(api, lines=[{"sku": "NUT-10", "quantity": 1}]).json()
        assert again["purchase_identifiers"]["visible"] == "SL-100002"
        assert again["dates"]["updated_at"] > order["dates"]["updated_at"]


def test_an_unreadable_state_file_is_set_aside(tmp_path: Path):
    state_path = tmp_path / "sim-state.bin"
    state_path.write_bytes(b"not a state file")
    credentials = {"site_id": SITE_ID, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    with SimulatorServer(state_path=state_path, **credentials) as server:
        counts = requests.get(f"{server.url}/_sim/state", timeout=10).json()
    assert counts["customers"] == 0 and counts["stock_locations"] == 1
    assert (tmp_path / "sim-state.bin.unreadable").read_bytes() == b"not a state file"
