"""The embedded SparkLayer simulator, spoken to over real HTTP with plain ``requests``.

These tests pin what the pipeline's client and the demo rely on from contract version 2
(contracts/sparklayer-api.md): auth, page and batch limits, the hard data limits, problem
documents, customers and groups (§2), stock (§4), the sync log (§6), the fault injector's
determinism, the call log and the state file surviving a restart. Purchases and the §7 buyer
endpoints are in ``test_simulator_purchases.py``; price lists and the portal's price rule in
``test_simulator_pricing.py``; both reuse the helpers defined here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from b2b_pipeline.simulator.limits import HARD_LIMITS
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


def open_portal_api(simulator: SimulatorServer) -> Iterator[PortalApi]:
    """An authenticated session for one test (the body of each simulator test file's fixture)."""
    portal_api = PortalApi(simulator.url)
    yield portal_api
    portal_api.session.close()


@pytest.fixture
def api(simulator: SimulatorServer) -> Iterator[PortalApi]:
    yield from open_portal_api(simulator)


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


BLANK_BREAK = [{"quantity": None, "price": None}]  # removes a SKU's prices (contract §3)


def create_price_list(api: PortalApi, slug: str, currency: str = "GBP") -> requests.Response:
    body = {"slug": slug, "name": slug, "currency_code": currency, "source": "integration"}
    return api.call("POST", "/api/v1/price-lists", body)


def seed_trade_customer(api: PortalApi, **overrides: Any) -> dict[str, Any]:
    """A group list with quantity breaks, a customer-specific list first, one customer.

    ``acme-special`` (first in the customer's order) prices BOLT-10 at 2.40, 2.00 from 50;
    ``trade-gbp`` prices BOLT-10 at 2.50, 2.20 from 10, 1.95 from 100, and NUT-10 at 0.40.
    """
    api.call("POST", "/api/v1/customer-groups", {"slug": "trade", "name": "Trade"})
    for slug in ("trade-gbp", "acme-special"):
        create_price_list(api, slug)
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
        [{"sku": "BOLT-10", "pricing": breaks((1, 2.40), (50, 2.00))}],
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
    """A buyer places a purchase through ``POST /_sim/orders`` (contract §7)."""
    order = {"customer": "ACME01", "type": "order", "payment_method": "on_account"}
    return api.sim("POST", "/orders", {**order, **body})


def order(api: PortalApi, **body: Any) -> dict[str, Any]:
    response = place_order(api, **body)
    assert response.status_code == 201, response.text
    return response.json()


def sparklayer_id(purchase: dict[str, Any]) -> str:
    return purchase["purchase_identifiers"]["sparklayer"]


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
        ("/api/v1/purchases", "limit", 501),
    ],
)
def test_page_size_over_the_limit_is_400_naming_the_parameter(api, path, parameter, over_limit):
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
def test_a_batch_of_501_rows_is_refused_and_500_accepted_with_204(api, path, method, row):
    create_price_list(api, "trade-gbp")
    rows = [{**row, "sku": f"SKU-{i:04d}"} for i in range(501)]
    document = problem(api.call(method, path, rows), 400)
    assert document["errors"][0]["code"] == "too-many-items"
    accepted = api.call(method, path, rows[:500])
    assert accepted.status_code == 204 and accepted.content == b""


def test_the_contract_hard_limits_are_the_simulators():
    assert HARD_LIMITS == {
        "price_lists": 15_000,
        "customer_groups": 100,
        "customers": 250_000,
        "products": 50_000,
        "line_items": 250,
        "addresses": 500,
    }


def _pass_the_limit(api: PortalApi, limit: str) -> requests.Response:
    """The call that takes the portal one past ``limit`` (lowered to 1 for the big ones)."""
    if limit == "price_lists":
        create_price_list(api, "first")
        return create_price_list(api, "second")
    if limit == "customer_groups":
        api.call("POST", "/api/v1/customer-groups", {"slug": "one", "name": "One"})
        return api.call("POST", "/api/v1/customer-groups", {"slug": "two", "name": "Two"})
    if limit == "customers":
        api.call("PUT", "/api/v2/customers/platform/C1", {"external_id": "C1", "email": "1@x"})
        return api.call("PUT", "/api/v2/customers/platform/C2", {"external_id": "C2"})
    if limit == "products":
        create_price_list(api, "a")
        create_price_list(api, "b")
        rows = [{"sku": "SKU-1", "pricing": breaks((1, 1.0))}]
        api.call("PATCH", "/api/v1/price-lists/a/pricing", rows)
        api.call("PATCH", "/api/v1/price-lists/b/pricing", rows)  # the same SKU: still one
        more = [{"sku": "SKU-2", "price_list_slug": "b", "pricing": breaks((1, 1.0))}]
        return api.call("PATCH", "/api/v1/batch-update-pricing", more)
    if limit == "addresses":
        body = {"external_id": "C1", "addresses": [{"line1": f"{i} High St"} for i in range(501)]}
        return api.call("PUT", "/api/v2/customers/platform/C1", body)
    raise AssertionError(limit)


@pytest.mark.parametrize(
    ("limit", "lowered_to"),
    [
        ("price_lists", 1),
        ("customer_groups", 1),
        ("customers", 1),
        ("products", 1),
        ("addresses", None),  # the real 500: cheap enough to send
    ],
)
def test_passing_a_hard_data_limit_is_400_naming_the_limit(api, monkeypatch, limit, lowered_to):
    if lowered_to is not None:
        monkeypatch.setitem(HARD_LIMITS, limit, lowered_to)
    document = problem(_pass_the_limit(api, limit), 400)
    assert document["errors"][0]["code"] == "limit-exceeded"
    assert f"hard limit of {HARD_LIMITS[limit]:,}" in document["detail"]
    counts = api.sim("GET", "/state").json()
    assert counts["price_lists"] <= 2 and counts["customers"] <= 1 and counts["priced_skus"] <= 1


def test_price_list_fields_are_checked(api):
    body = {"slug": "x" * 31, "name": "n" * 65, "currency_code": "POUNDS"}
    document = problem(api.call("POST", "/api/v1/price-lists", body), 400)
    assert properties(document) == {"slug", "name", "currency_code"}


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/api/v1/price-lists", {"slug": "trade-gbp", "name": "T", "currency_code": "GBP"}, 400),
        ("/api/v1/customer-groups", {"slug": "trade", "name": "Trade"}, 400),
        ("/api/v1/stock-locations", {"name": "Leeds", "external_id": "LEEDS"}, 409),
    ],
)
def test_a_duplicate_create_is_refused_as_the_contract_says(api, path, body, status):
    assert api.call("POST", path, body).status_code == 201
    document = problem(api.call("POST", path, body), status)
    assert document["errors"][0]["code"] == "resource-already-exists"


# -- customers and groups (§2) -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("lookup", "identifier", "body", "field"),
    [
        ("platform", "ACME01", {"external_id": "OTHER", "email": "a@b.example"}, "external_id"),
        ("platform", "ACME01", {"email": "a@b.example"}, "external_id"),
        ("email", "a@b.example", {"email": "c@d.example"}, "email"),
    ],
)
def test_a_customer_put_whose_body_lacks_the_urls_identifier_is_id_mismatch(
    api, lookup, identifier, body, field
):
    document = problem(api.call("PUT", f"/api/v2/customers/{lookup}/{identifier}", body), 400)
    assert document["errors"][0]["code"] == "idMismatch"
    assert properties(document) == {field}
    assert api.sim("GET", "/state").json()["customers"] == 0


def test_a_customer_put_by_sparklayer_id_must_carry_that_id(api):
    created = seed_trade_customer(api)
    path = f"/api/v2/customers/sparklayer/{created['id']}"
    body = {key: value for key, value in created.items() if key != "id"}
    assert problem(api.call("PUT", path, body), 400)["errors"][0]["code"] == "idMismatch"
    assert api.call("PUT", path, created).status_code == 200


def test_a_customer_put_replaces_and_clears_every_field_left_out(api):
    terms = {"credit_limit": 500, "balance": 20, "currency_code": "GBP", "net_terms": 30}
    created = seed_trade_customer(api, payment_on_account=terms)
    assert created["accounting_id"] == "ACME01" and created["price_lists"][0] == "acme-special"
    assert created["payment_on_account"]["credit_limit"] == 500
    replacement = {"external_id": "ACME01", "email": "new@acme.example", "company_name": "Acme"}
    replaced = api.call("PUT", "/api/v2/customers/platform/ACME01", replacement)
    assert replaced.status_code == 200
    body = replaced.json()
    assert body["id"] == created["id"] and body["created_at"] == created["created_at"]
    assert body["updated_at"] > created["updated_at"]
    # What the body left out is gone, not kept: this is why every client update is a
    # read-modify-write of the whole customer.
    assert body["accounting_id"] is None and body["group"] is None
    assert body["price_lists"] == [] and body["payment_on_account"] is None
    assert body["discount_percentage"] == 0
    assert api.call("GET", f"/api/v2/customers/sparklayer/{created['id']}").json() == body


def test_customers_are_found_by_sparklayer_id_external_id_and_email(api):
    created = seed_trade_customer(api)
    for lookup, identifier in (
        ("sparklayer", created["id"]),
        ("platform", "ACME01"),
        ("email", "BUYER@acme.example"),  # an email is one address whatever its case
    ):
        found = api.call("GET", f"/api/v2/customers/{lookup}/{identifier}")
        assert found.status_code == 200 and found.json()["id"] == created["id"]
    problem(api.call("GET", "/api/v2/customers/email/nobody@acme.example"), 404)
    problem(api.call("GET", "/api/v2/customers/accounting/ACME01"), 400)


def test_a_customer_put_by_email_creates_then_replaces(api):
    body = {"email": "new@shop.example", "company_name": "Shop"}
    assert api.call("PUT", "/api/v2/customers/email/new@shop.example", body).status_code == 201
    again = api.call("PUT", "/api/v2/customers/email/new@shop.example", body)
    assert again.status_code == 200
    assert api.sim("GET", "/state").json()["customers"] == 1


def test_a_customer_put_by_an_unknown_sparklayer_id_is_404(api):
    body = {"id": "0b1d2f4e-0000-4000-8000-000000000000", "email": "x@y.example"}
    problem(api.call("PUT", f"/api/v2/customers/sparklayer/{body['id']}", body), 404)


def test_a_duplicate_email_or_external_id_is_409(api):
    seed_trade_customer(api)
    same_email = {"external_id": "OTHER1", "email": "Buyer@Acme.example"}
    document = problem(api.call("PUT", "/api/v2/customers/platform/OTHER1", same_email), 409)
    assert document["errors"][0]["code"] == "resource-already-exists"
    assert properties(document) == {"email"}
    created = api.call(
        "PUT", "/api/v2/customers/email/other@x.example", {"email": "other@x.example"}
    ).json()
    taken = {**created, "external_id": "ACME01"}
    document = problem(api.call("PUT", f"/api/v2/customers/sparklayer/{created['id']}", taken), 409)
    assert properties(document) == {"external_id"}


def test_a_customer_pointing_at_an_unknown_group_role_list_or_parent_is_400(api):
    body = {
        "external_id": "X1",
        "group": "ghost",
        "role": "emperor",
        "price_lists": ["nowhere"],
        "parent_customer_id": "no-such-customer",
    }
    document = problem(api.call("PUT", "/api/v2/customers/platform/X1", body), 400)
    assert properties(document) == {"group", "role", "price_lists[0]", "parent_customer_id"}


def test_an_external_id_in_sparklayers_own_id_space_is_400(api):
    body = {"external_id": "cu_123"}
    assert properties(problem(api.call("PUT", "/api/v2/customers/platform/cu_123", body), 400)) == {
        "external_id"
    }


def test_deleting_a_customer_answers_204_and_it_is_gone(api):
    created = seed_trade_customer(api)
    deleted = api.call("DELETE", "/api/v2/customers/platform/ACME01")
    assert deleted.status_code == 204 and deleted.content == b""
    problem(api.call("GET", f"/api/v2/customers/sparklayer/{created['id']}"), 404)
    problem(api.call("DELETE", "/api/v2/customers/platform/ACME01"), 404)
    # The email and external id are free again.
    assert (
        api.call(
            "PUT",
            "/api/v2/customers/platform/ACME01",
            {"external_id": "ACME01", "email": "buyer@acme.example"},
        ).status_code
        == 201
    )


def test_customers_are_paged_and_self_registered_companies_have_no_accounting_id(api):
    seed_trade_customer(api)
    registered = api.sim(
        "POST", "/customers/register", {"company_name": "Self Ltd", "email": "s@x"}
    )
    assert registered.status_code == 201
    assert registered.json()["accounting_id"] is None and registered.json()["external_id"] is None
    # The same email signing up again is the same company, not a second one.
    again = api.sim("POST", "/customers/register", {"company_name": "Self Ltd", "email": "S@x"})
    assert again.status_code == 200 and again.json()["id"] == registered.json()["id"]
    fetched = api.call("GET", "/api/v2/customers/email/s@x").json()
    assert fetched == registered.json()
    page = api.call("GET", "/api/v2/customers", page=2, page_size=1).json()
    assert page["pagination"] == {"current_page": 2, "total_pages": 2, "page_size": 1, "total": 2}
    assert page["data"][0]["company_name"] == "Self Ltd"


def test_customer_groups_carry_payment_methods_and_ordering_and_can_be_patched(api):
    created = api.call("POST", "/api/v1/customer-groups", {"slug": "trade", "name": "Trade"})
    assert created.json() == {
        "slug": "trade",
        "name": "Trade",
        "parent_slug": None,
        "payment_methods": ["on_account", "invoice", "platform_upfront"],
        "ordering_enabled": True,
    }
    patch = {"ordering_enabled": False, "payment_methods": ["platform_upfront"]}
    patched = api.call("PATCH", "/api/v1/customer-groups/trade", patch)
    assert patched.status_code == 200
    assert patched.json() == {**created.json(), **patch}
    assert api.call("GET", "/api/v1/customer-groups").json() == [patched.json()]
    problem(api.call("PATCH", "/api/v1/customer-groups/ghost", patch), 404)
    bad = {"payment_methods": ["pay_on_account"], "parent_slug": "trade"}
    assert properties(problem(api.call("PATCH", "/api/v1/customer-groups/trade", bad), 400)) == {
        "payment_methods"
    }
    orphan = {"slug": "retail", "name": "Retail", "parent_slug": "ghost"}
    assert properties(problem(api.call("POST", "/api/v1/customer-groups", orphan), 400)) == {
        "parent_slug"
    }


# -- stock (§4) --------------------------------------------------------------------------------
def test_stock_is_written_with_204_and_fetched_nested_by_location(api):
    leeds = api.call(
        "POST", "/api/v1/stock-locations", {"name": "Leeds", "external_id": "LEEDS"}
    ).json()
    rows = [
        {"stock_location_external_id": "default", "sku": "BOLT-10", "stock_level": 40},
        {
            "stock_location_id": leeds["id"],
            "sku": "BOLT-10",
            "stock_level": 7,
            "restock_date": "2025-02-01",
            "min_stock_level": 2,
        },
        {"stock_location_external_id": "LEEDS", "sku": "ONLY-IN-LEEDS", "stock_level": 1},
    ]
    written = api.call("POST", "/api/v1/batch-update-stock", rows)
    assert written.status_code == 204 and written.content == b""
    default_id = next(
        loc["id"]
        for loc in api.call("GET", "/api/v1/stock-locations").json()
        if loc["external_id"] == "default"
    )
    query = {"skus": ["BOLT-10", "NO-STOCK", "ONLY-IN-LEEDS"]}
    default_only = api.call("POST", "/api/v1/batch-fetch-stock", query).json()
    assert default_only == [
        {
            "sku": "BOLT-10",
            "stock_levels": [
                {
                    "stock_location_id": default_id,
                    "stock_location_external_id": "default",
                    "stock_level": 40,
                    "restock_date": None,
                    "min_stock_level": None,
                }
            ],
        }
    ]
    query["filter"] = {"all_stock_locations": True}
    everywhere = api.call("POST", "/api/v1/batch-fetch-stock", query).json()
    assert [row["sku"] for row in everywhere] == ["BOLT-10", "ONLY-IN-LEEDS"]  # NO-STOCK left out
    bolt = {level["stock_location_external_id"]: level for level in everywhere[0]["stock_levels"]}
    assert bolt["LEEDS"] == {
        "stock_location_id": leeds["id"],
        "stock_location_external_id": "LEEDS",
        "stock_level": 7,
        "restock_date": "2025-02-01",
        "min_stock_level": 2,
    }


def test_stock_batch_with_a_repeated_pair_or_unknown_location_applies_nothing(api):
    rows = [
        {"stock_location_external_id": "default", "sku": "A", "stock_level": 1},
        {"stock_location_external_id": "default", "sku": "A", "stock_level": 2},
        {"stock_location_external_id": "MARS", "sku": "B", "stock_level": 3},
        {"stock_location_id": "no-such-id", "sku": "C", "stock_level": 3},
        {"sku": "D", "stock_level": 3},
    ]
    document = problem(api.call("POST", "/api/v1/batch-update-stock", rows[:4]), 400)
    assert {(e["line"], e["field"]) for e in document["errors"]} == {
        (1, "sku"),
        (2, "stock_location_external_id"),
        (3, "stock_location_id"),
    }
    document = problem(api.call("POST", "/api/v1/batch-update-stock", rows[4:]), 400)
    assert {(e["line"], e["field"]) for e in document["errors"]} == {
        (0, "stock_location_external_id")
    }
    fetched = api.call("POST", "/api/v1/batch-fetch-stock", {"skus": ["A", "B", "C"]}).json()
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
        except requests.JSONDecodeError:  # whichever JSON parser requests uses
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
    create_price_list(api, "a")
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
        (204, 1),
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
        placed = order(
            api, payment_method="platform_upfront", lines=[{"sku": "BOLT-10", "quantity": 60}]
        )
        path = f"/api/v1/purchases/sparklayer/{sparklayer_id(placed)}"
        before = {
            "state": api.sim("GET", "/state").json(),
            "pricing": api.call("GET", "/api/v1/price-lists/trade-gbp/pricing").json(),
            "customers": api.call("GET", "/api/v2/customers").json(),
            "transactions": api.call("GET", f"{path}/transactions").json(),
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
            "transactions": api.call("GET", f"{path}/transactions").json(),
        }
        assert after == before and len(after["transactions"]) == 1
        assert api.call("GET", path).json() == placed
        assert api.call("GET", "/api/v1/purchases/visible/SL-100001").json() == placed
        stock = api.call("POST", "/api/v1/batch-fetch-stock", {"skus": ["BOLT-10"]}).json()
        assert stock[0]["stock_levels"][0]["stock_level"] == 3
        # Numbering and the change clock carry on where they stopped.
        again = order(api, lines=[{"sku": "NUT-10", "quantity": 1}])
        assert again["purchase_identifiers"]["visible"] == "SL-100002"
        assert again["dates"]["updated_at"] > placed["dates"]["updated_at"]
        newest = api.call("GET", "/api/v1/purchases").json()
        assert [sparklayer_id(p) for p in newest] == [sparklayer_id(again), sparklayer_id(placed)]


def test_an_unreadable_state_file_is_set_aside(tmp_path: Path):
    state_path = tmp_path / "sim-state.bin"
    state_path.write_bytes(b"not a state file")
    credentials = {"site_id": SITE_ID, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    with SimulatorServer(state_path=state_path, **credentials) as server:
        counts = requests.get(f"{server.url}/_sim/state", timeout=10).json()
    assert counts["customers"] == 0 and counts["stock_locations"] == 1
    assert (tmp_path / "sim-state.bin.unreadable").read_bytes() == b"not a state file"
