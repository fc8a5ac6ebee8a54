"""The SparkLayer client (contract v2) against the embedded simulator, over real HTTP.

Each test drives the client through the simulator's test controls (``/_sim/config``,
``/_sim/faults``, ``/_sim/tokens/revoke``) and checks what the portal saw in ``/_sim/calls``:
how many calls, which statuses, how many items per batch. Nothing is mocked. Reading the
purchase list while it changes, and the ERP number write-back, are proved in
``test_sparklayer_client_purchases.py``; this module holds the helpers both use.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from b2b_pipeline.connectors.sparklayer.client import BatchResult, SparkLayerClient
from b2b_pipeline.connectors.sparklayer.errors import (
    AuthenticationError,
    ForbiddenError,
    InvalidRequestError,
    MalformedResponseError,
    NotFoundError,
    PortalUnreachableError,
    ServerError,
)
from b2b_pipeline.connectors.sparklayer.purchases import purchase_id
from b2b_pipeline.connectors.sparklayer.wire import HARD_LIMITS
from b2b_pipeline_tests.conftest import CLIENT_ID, CLIENT_SECRET, SITE_ID

CUSTOMERS = "/api/v2/customers"
CUSTOMER_GROUPS = "/api/v1/customer-groups"
PRICE_LISTS = "/api/v2/price-lists"
PRICING = "/api/v1/price-lists/{slug}/pricing"
FETCH_PRICING = "/api/v1/fetch-customer-pricing"
PURCHASES = "/api/v1/purchases"
PURCHASE = "/api/v1/purchases/{lookupBy}/{identifier}"
TOKEN = "/api/auth/token"


# ------------------------------------------------------------------ helpers and fixtures


class Sim:
    """The simulator's test controls, as a buyer or a test harness would call them."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()

    def _send(self, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(method, self.url + path, json=body, timeout=10)
        assert response.status_code < 300, (method, path, response.status_code, response.text)
        return response.json() if response.content else None

    def faults(self, **settings: Any) -> None:
        self._send("PUT", "/_sim/faults", settings)

    def fail_next(self, method: str, endpoint: str, status: int, count: int = 1) -> None:
        rule = {"method": method, "endpoint": endpoint, "status": status, "count": count}
        self.faults(fail_next=[rule])

    def config(self, **settings: Any) -> None:
        self._send("PUT", "/_sim/config", settings)

    def revoke_tokens(self) -> None:
        self._send("POST", "/_sim/tokens/revoke")

    def calls(self) -> dict[str, Any]:
        return self._send("GET", "/_sim/calls")

    def clear_calls(self) -> None:
        self._send("DELETE", "/_sim/calls")

    def log(self, endpoint: str, method: str | None = None) -> list[dict[str, Any]]:
        """The calls log rows for one path template, oldest first."""
        return [
            row
            for row in self.calls()["log"]
            if row["endpoint"] == endpoint and (method is None or row["method"] == method)
        ]

    def register(self, company_name: str) -> dict[str, Any]:
        body = {"company_name": company_name, "email": f"{company_name.lower()}@example.com"}
        return self._send("POST", "/_sim/customers/register", body)

    def order(
        self,
        customer: str,
        sku: str = "SKU-1",
        quantity: int = 1,
        *,
        purchase_type: str = "order",
        payment_method: str = "on_account",
        customer_reference: str = "",
    ) -> dict[str, Any]:
        """A buyer places a purchase (an order by default); the portal's document comes back."""
        body = {
            "customer": customer,
            "type": purchase_type,
            "payment_method": payment_method,
            "customer_reference": customer_reference,
            "lines": [{"sku": sku, "quantity": quantity, "unit_price": 10.0}],
        }
        return self._send("POST", "/_sim/orders", body)

    def change(self, purchase: str, **change: Any) -> dict[str, Any]:
        """A buyer confirms (``type``) or cancels (``calculated_fulfilment_status``)."""
        return self._send("PATCH", f"/_sim/purchases/{purchase}", change)

    def delete(self, purchase: str) -> None:
        response = self.http.delete(
            f"{self.url}/api/v1/purchases/sparklayer/{purchase}", headers=self._api_headers()
        )
        assert response.status_code == 204, response.text

    def _api_headers(self) -> dict[str, str]:
        """Headers of a separate API user (the portal's own admin deleting a purchase)."""
        answer = self.http.post(
            f"{self.url}/api/auth/token",
            json={
                "grant_type": "client_credentials",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
            },
            headers={"Site-Id": SITE_ID},
            timeout=10,
        )
        return {"Authorization": f"Bearer {answer.json()['access_token']}", "Site-Id": SITE_ID}


@pytest.fixture
def sim(simulator: Any) -> Iterator[Sim]:
    controls = Sim(simulator.url)
    yield controls
    controls.http.close()


@pytest.fixture
def make_client(simulator: Any) -> Iterator[Callable[..., SparkLayerClient]]:
    """Clients with settings of the test's choosing, closed afterwards."""
    made: list[SparkLayerClient] = []

    def make(**overrides: Any) -> SparkLayerClient:
        settings: dict[str, Any] = {
            "requests_per_second": 1000.0,
            "backoff_max": 0.05,
            "max_attempts": 5,
        }
        settings.update(overrides)
        secret = settings.pop("client_secret", CLIENT_SECRET)
        client = SparkLayerClient(simulator.url, SITE_ID, CLIENT_ID, secret, **settings)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def customer(account_code: str, **fields: Any) -> dict[str, Any]:
    return {
        "external_id": account_code,
        "email": f"{account_code.lower()}@example.com",
        "first_name": "Ada",
        "last_name": "Buyer",
        "company_name": f"Company {account_code}",
        "accounting_id": account_code,
        "group": None,
        "price_lists": [],
        "discount_percentage": 0,
        "tax_exempt": False,
        "payment_on_account": None,
        "addresses": [],
        **fields,
    }


def price_rows(count: int, *, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"sku": f"SKU-{n:05d}", "pricing": [{"quantity": 1, "price": 10.0 + n / 100}]}
        for n in range(start, start + count)
    ]


def statuses(rows: list[dict[str, Any]]) -> list[int]:
    return [row["status"] for row in rows]


# ------------------------------------------------------------------ authentication


def test_token_is_renewed_before_it_expires_without_a_refused_call(
    portal: SparkLayerClient, sim: Sim
) -> None:
    sim.config(token_ttl_seconds=1)
    portal.list_customer_groups()
    time.sleep(1.1)
    portal.list_customer_groups()

    assert portal.stats.token_fetches == 2
    assert statuses(sim.log(CUSTOMER_GROUPS)) == [200, 200]


def test_a_revoked_token_is_renewed_once_and_the_call_succeeds(
    portal: SparkLayerClient, sim: Sim
) -> None:
    portal.list_customer_groups()
    sim.revoke_tokens()

    assert portal.list_customer_groups() == []
    assert statuses(sim.log(CUSTOMER_GROUPS)) == [200, 401, 200]
    assert portal.stats.token_fetches == 2


def test_a_token_refused_twice_fails_clearly_without_further_retries(
    portal: SparkLayerClient, sim: Sim
) -> None:
    sim.faults(reject_all_tokens=True)

    with pytest.raises(AuthenticationError) as refused:
        portal.list_customer_groups()

    assert refused.value.status == 401
    assert "refused" in str(refused.value)
    assert statuses(sim.log(CUSTOMER_GROUPS)) == [401, 401]
    assert len(sim.log(TOKEN)) == 2


def test_wrong_credentials_give_a_clear_error_that_never_shows_the_secret(
    make_client: Callable[..., SparkLayerClient], sim: Sim, caplog: pytest.LogCaptureFixture
) -> None:
    wrong_secret = "wr0ng-secret-that-must-never-be-printed"
    client = make_client(client_secret=wrong_secret)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(AuthenticationError) as refused:
        client.list_customer_groups()

    message = str(refused.value)
    assert "client credentials refused" in message
    assert "SPARKLAYER_CLIENT_SECRET" in message  # says what to check
    for shown in (message, repr(refused.value), repr(client), caplog.text):
        assert wrong_secret not in shown
        assert CLIENT_SECRET not in shown
    # Credentials refused are not retried: one token request, no API call.
    assert statuses(sim.log(TOKEN)) == [401]
    assert sim.log(CUSTOMER_GROUPS) == []


def test_no_token_or_secret_reaches_the_logs_of_a_working_client(
    portal: SparkLayerClient, sim: Sim, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sim.fail_next("GET", CUSTOMER_GROUPS, 503)
    portal.list_customer_groups()
    sim.revoke_tokens()
    portal.list_customer_groups()

    assert "retrying" in caplog.text  # the retry was logged...
    assert "Bearer" not in caplog.text  # ...but no authorisation header
    assert CLIENT_SECRET not in caplog.text
    assert repr(portal) == f"SparkLayerClient(base_url={portal.base_url!r}, site_id='{SITE_ID}')"


def test_threads_sharing_one_client_share_one_token(portal: SparkLayerClient, sim: Sim) -> None:
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(10):
                portal.list_customer_groups()
        except BaseException as error:  # surfaced by the assertion below
            failures.append(error)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    assert len(sim.log(TOKEN)) == 1
    assert statuses(sim.log(CUSTOMER_GROUPS)) == [200] * 80


# ------------------------------------------------------------------ paging


def test_customer_pages_return_every_customer_exactly_once(
    portal: SparkLayerClient, sim: Sim
) -> None:
    registered = {sim.register(f"Company{n:04d}")["id"] for n in range(620)}
    sim.clear_calls()

    seen = [c["id"] for c in portal.iter_customers(page_size=250)]

    assert len(seen) == 620
    assert set(seen) == registered
    assert len(sim.log(CUSTOMERS, "GET")) == 3  # 250 + 250 + 120, following total_pages


def test_pricing_is_read_in_one_call_and_an_empty_list_reads_as_nothing(
    portal: SparkLayerClient, sim: Sim
) -> None:
    portal.create_price_list("trade", "Trade", "GBP")
    assert list(portal.iter_pricing("trade")) == []  # the portal answers 204, no body
    sent = price_rows(1200)
    portal.patch_pricing("trade", sent)
    sim.clear_calls()

    fetched = list(portal.iter_pricing("trade"))

    assert [row["sku"] for row in fetched] == [row["sku"] for row in sent]
    assert [row["pricing"] for row in fetched] == [row["pricing"] for row in sent]
    assert statuses(sim.log(PRICING, "GET")) == [200]  # 1,200 SKUs, one call: not paged


# ------------------------------------------------------------------ retries


def test_a_429_waits_as_retry_after_asks_then_succeeds(portal: SparkLayerClient, sim: Sim) -> None:
    sim.fail_next("GET", CUSTOMER_GROUPS, 429)

    started = time.monotonic()
    groups = portal.list_customer_groups()
    waited = time.monotonic() - started

    assert groups == []
    assert waited >= 1.0  # the simulator sends Retry-After: 1
    assert portal.stats.retry_after_wait_seconds == pytest.approx(1.0)
    assert statuses(sim.log(CUSTOMER_GROUPS)) == [429, 200]


def test_the_portals_rate_limit_is_honoured_until_every_call_succeeds(
    portal: SparkLayerClient, sim: Sim
) -> None:
    sim.faults(requests_per_second=2, burst=2)

    for _ in range(4):
        portal.list_customer_groups()

    logged = statuses(sim.log(CUSTOMER_GROUPS))
    assert logged.count(200) == 4
    assert 429 in logged
    assert portal.stats.retry_after_wait_seconds >= 1.0


def test_client_side_pacing_spaces_calls_and_reports_the_wait(
    make_client: Callable[..., SparkLayerClient], sim: Sim
) -> None:
    client = make_client(requests_per_second=10.0, burst=1)

    started = time.monotonic()
    for _ in range(6):  # one token call and six API calls at 10 per second
        client.list_customer_groups()
    elapsed = time.monotonic() - started

    assert elapsed >= 0.55
    assert client.stats.limiter_wait_seconds >= 0.5
    assert client.stats.rate_limit_wait_seconds >= client.stats.limiter_wait_seconds
    assert 429 not in statuses(sim.log(CUSTOMER_GROUPS))


def test_clients_of_one_portal_site_share_one_pace(
    make_client: Callable[..., SparkLayerClient],
) -> None:
    first = make_client(requests_per_second=10.0, burst=1)
    second = make_client(requests_per_second=10.0, burst=1)

    started = time.monotonic()
    for _ in range(3):
        first.list_customer_groups()
        second.list_customer_groups()
    elapsed = time.monotonic() - started

    # 2 token calls + 6 API calls through one bucket of 10 per second: at least 0.7 s.
    assert elapsed >= 0.65


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retried_until_the_call_succeeds(
    portal: SparkLayerClient, sim: Sim, status: int
) -> None:
    sim.fail_next("GET", CUSTOMER_GROUPS, status, count=2)

    assert portal.list_customer_groups() == []
    assert statuses(sim.log(CUSTOMER_GROUPS)) == [status, status, 200]
    assert portal.stats.retries == 2


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(400, InvalidRequestError), (403, ForbiddenError), (404, NotFoundError)],
)
def test_other_client_errors_are_not_retried(
    portal: SparkLayerClient, sim: Sim, status: int, error_type: type[Exception]
) -> None:
    sim.fail_next("GET", CUSTOMER_GROUPS, status, count=3)

    with pytest.raises(error_type) as refused:
        portal.list_customer_groups()

    assert refused.value.status == status
    assert refused.value.problems[0].code == "injected-failure"
    assert statuses(sim.log(CUSTOMER_GROUPS)) == [status]


def test_an_unknown_record_reads_as_none_after_one_call(portal: SparkLayerClient, sim: Sim) -> None:
    assert portal.get_purchase("no-such-purchase") is None
    assert portal.get_customer("NO-SUCH-ACCOUNT") is None
    with pytest.raises(NotFoundError) as missing:
        list(portal.iter_pricing("no-such-list"))

    assert "resource-id-not-found" in missing.value.codes
    assert statuses(sim.log(PURCHASE)) == [404]
    assert statuses(sim.log(PRICING)) == [404]


def test_a_conflicting_write_is_retried(portal: SparkLayerClient, sim: Sim) -> None:
    portal.create_price_list("trade", "Trade", "GBP")
    sim.fail_next("PATCH", PRICING, 409, count=2)

    result = portal.patch_pricing("trade", price_rows(3))

    assert result == BatchResult(calls=1, sent=3, rejected=[])
    assert statuses(sim.log(PRICING, "PATCH")) == [409, 409, 204]


def test_a_malformed_body_is_a_typed_error_once_retries_are_spent(
    make_client: Callable[..., SparkLayerClient], sim: Sim
) -> None:
    client = make_client(max_attempts=2)
    client.list_customer_groups()  # a token first, while bodies are intact
    sim.faults(malformed_rate=1.0)

    with pytest.raises(PortalUnreachableError) as gave_up:
        client.list_customer_groups()

    assert isinstance(gave_up.value.last_error, MalformedResponseError)
    assert "not the JSON promised" in str(gave_up.value)
    assert statuses(sim.log(CUSTOMER_GROUPS)) == [200, 200, 200]  # portal said OK, body cut


def test_a_transiently_malformed_body_is_retried(
    make_client: Callable[..., SparkLayerClient], sim: Sim
) -> None:
    client = make_client(max_attempts=6)
    client.list_customer_groups()
    sim.faults(malformed_rate=0.3, seed=7)

    for _ in range(10):
        assert client.list_customer_groups() == []

    assert client.stats.retries > 0


def test_retries_give_up_after_the_bound_saying_what_was_tried(
    make_client: Callable[..., SparkLayerClient], sim: Sim, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(max_attempts=3)
    sim.fail_next("GET", CUSTOMERS, 503, count=10)
    caplog.set_level(logging.WARNING)

    with pytest.raises(PortalUnreachableError) as gave_up:
        list(client.iter_customers())

    message = str(gave_up.value)
    assert "GET /api/v2/customers" in message
    assert "3 attempts" in message
    assert "503" in message
    assert gave_up.value.attempts == 3
    assert isinstance(gave_up.value.last_error, ServerError)
    assert statuses(sim.log(CUSTOMERS)) == [503, 503, 503]
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2


def test_an_unreachable_portal_is_reported_after_the_bound() -> None:
    with socket.socket() as probe:  # a loopback port on which nothing listens
        probe.bind(("127.0.0.1", 0))
        closed_url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    client = SparkLayerClient(
        closed_url, SITE_ID, CLIENT_ID, CLIENT_SECRET, max_attempts=2, backoff_max=0.05
    )

    with client, pytest.raises(PortalUnreachableError) as gave_up:
        client.list_stock_locations()

    assert gave_up.value.status is None
    assert "GET /api/v1/stock-locations: gave up after 2 attempts" in str(gave_up.value)
    assert "ConnectionError" in str(gave_up.value)


# ------------------------------------------------------------------ batch writers


@pytest.mark.parametrize("writer", ["patch_pricing", "batch_update_pricing", "batch_update_stock"])
def test_batch_writers_split_1201_rows_into_500_500_and_201(
    portal: SparkLayerClient, sim: Sim, writer: str
) -> None:
    portal.create_price_list("trade", "Trade", "GBP")
    rows = price_rows(1201)
    sim.clear_calls()

    if writer == "patch_pricing":
        result = portal.patch_pricing("trade", rows)
    elif writer == "batch_update_pricing":
        result = portal.batch_update_pricing([{**r, "price_list_slug": "trade"} for r in rows])
    else:
        stock = [
            {"stock_location_external_id": "default", "sku": r["sku"], "stock_level": 5}
            for r in rows
        ]
        result = portal.batch_update_stock(stock)

    assert result == BatchResult(calls=3, sent=1201, rejected=[])
    writes = [row for row in sim.calls()["log"] if row["method"] in ("PATCH", "POST")]
    assert [row["items"] for row in writes] == [500, 500, 201]


def test_a_refused_price_row_comes_back_with_its_reason_and_the_rest_is_applied(
    portal: SparkLayerClient, sim: Sim
) -> None:
    portal.create_price_list("trade", "Trade", "GBP")
    rows = price_rows(10)
    rows[4] = {"sku": "SKU-BAD", "pricing": [{"quantity": 1, "price": -1}]}

    result = portal.patch_pricing("trade", rows)

    assert result.calls == 2 and result.sent == 9
    [rejected] = result.rejected
    assert rejected.item == rows[4]
    assert rejected.field == "pricing[0].price"
    assert "price must be a number of at least 0" in rejected.message
    applied = [row["sku"] for row in portal.iter_pricing("trade")]
    assert applied == [row["sku"] for row in rows if row["sku"] != "SKU-BAD"]
    assert [row["items"] for row in sim.log(PRICING, "PATCH")] == [10, 9]


def test_a_stock_row_for_an_unknown_location_is_rejected_and_the_rest_applied(
    portal: SparkLayerClient,
) -> None:
    rows = [
        {"stock_location_external_id": "default", "sku": "SKU-1", "stock_level": 3},
        {"stock_location_external_id": "nowhere", "sku": "SKU-2", "stock_level": 4},
        {"stock_location_external_id": "default", "sku": "SKU-3", "stock_level": 5},
    ]

    result = portal.batch_update_stock(rows)

    assert (result.calls, result.sent) == (2, 2)
    assert [(r.item["sku"], r.field) for r in result.rejected] == [
        ("SKU-2", "stock_location_external_id")
    ]
    levels = portal.batch_fetch_stock(["SKU-1", "SKU-2", "SKU-3"])
    assert {(level["sku"], level["stock_level"]) for level in levels} == {
        ("SKU-1", 3),
        ("SKU-3", 5),
    }


def test_a_batch_refused_again_after_the_resend_is_reported_row_by_row_not_retried(
    portal: SparkLayerClient, sim: Sim
) -> None:
    # The portal checks row shapes first and locations second, so the resend without the
    # malformed row is refused again for the unknown location: the client stops there.
    rows = [
        {"stock_location_external_id": "default", "sku": "SKU-1", "stock_level": 3},
        {"stock_location_external_id": "default", "sku": "SKU-2", "stock_level": "many"},
        {"stock_location_external_id": "nowhere", "sku": "SKU-3", "stock_level": 5},
        {"stock_location_external_id": "default", "sku": "SKU-4", "stock_level": 6},
    ]

    result = portal.batch_update_stock(rows)

    assert (result.calls, result.sent) == (2, 0)
    reasons = {r.item["sku"]: (r.field, r.message) for r in result.rejected}
    assert reasons.keys() == {"SKU-1", "SKU-2", "SKU-3", "SKU-4"}
    assert reasons["SKU-2"][0] == "stock_level"
    assert reasons["SKU-3"][0] == "stock_location_external_id"
    assert "the next sync sends it again" in reasons["SKU-1"][1]
    assert [row["items"] for row in sim.log("/api/v1/batch-update-stock")] == [4, 3]
    assert portal.batch_fetch_stock(["SKU-1", "SKU-4"]) == []


def test_a_batch_refused_as_a_whole_raises(portal: SparkLayerClient) -> None:
    with pytest.raises(NotFoundError):
        portal.patch_pricing("no-such-list", price_rows(2))


# ------------------------------------------------------------------ contract round trips


def test_customer_endpoints_round_trip(portal: SparkLayerClient) -> None:
    assert portal.create_customer_group(
        {"slug": "trade", "name": "Trade", "parent_slug": None, "ordering_enabled": True}
    )
    assert [g["slug"] for g in portal.list_customer_groups()] == ["trade"]

    created = portal.put_customer(customer("ACC-7", group="trade", discount_percentage=5))
    assert created["id"] and created["group"] == "trade"
    assert portal.get_customer("ACC-7") == created
    assert portal.get_customer(created["id"], lookup_by="sparklayer") == created
    assert portal.get_customer("acc-7@example.com", lookup_by="email") == created
    assert portal.get_customer("nobody@example.com", lookup_by="email") is None

    replaced = portal.put_customer({**created, "company_name": "Renamed"}, lookup_by="sparklayer")
    assert replaced["id"] == created["id"] and replaced["company_name"] == "Renamed"
    by_email = portal.put_customer({**replaced, "last_name": "Lovelace"}, lookup_by="email")
    assert by_email["id"] == created["id"] and by_email["last_name"] == "Lovelace"
    assert [c["external_id"] for c in portal.iter_customers()] == ["ACC-7"]


def test_a_group_or_price_list_that_exists_is_read_back_not_created_again(
    portal: SparkLayerClient, sim: Sim
) -> None:
    portal.create_customer_group({"slug": "trade", "name": "Trade"})
    portal.create_price_list("trade", "Trade", "GBP")
    sim.clear_calls()

    assert portal.create_customer_group({"slug": "trade", "name": "Trade"}) is None
    assert portal.create_price_list("trade", "Trade", "GBP") is None

    # The portal answers a duplicate with a 400 [doc]; the client reads back, never resends.
    assert statuses(sim.log(CUSTOMER_GROUPS, "POST")) == [400]
    assert statuses(sim.log(CUSTOMER_GROUPS, "GET")) == [200]
    assert statuses(sim.log("/api/v1/price-lists", "POST")) == [400]
    assert statuses(sim.log(PRICE_LISTS, "GET")) == [200]


def test_any_other_refused_create_raises_and_is_never_retried(
    portal: SparkLayerClient, sim: Sim
) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        portal.create_price_list("trade", "Trade", "NOT-A-CURRENCY")
    assert not refused.value.already_exists

    sim.fail_next("POST", CUSTOMER_GROUPS, 400)
    with pytest.raises(InvalidRequestError):
        portal.create_customer_group({"slug": "trade", "name": "Trade"})

    assert statuses(sim.log("/api/v1/price-lists", "POST")) == [400]
    assert statuses(sim.log(CUSTOMER_GROUPS, "POST")) == [400]
    assert sim.log(CUSTOMER_GROUPS, "GET") == []  # not mistaken for "already exists"
    assert portal.list_customer_groups() == []


def test_price_list_endpoints_round_trip(portal: SparkLayerClient) -> None:
    created = portal.create_price_list("trade", "Trade prices", "GBP")
    assert created is not None and created["slug"] == "trade"
    portal.create_price_list("acc-7", "ACC-7 prices", "GBP")
    assert [(p["slug"], p["currency_code"]) for p in portal.iter_price_lists()] == [
        ("trade", "GBP"),
        ("acc-7", "GBP"),
    ]

    breaks = [{"quantity": 1, "price": 12.5}, {"quantity": 10, "price": 11.0}]
    portal.patch_pricing("trade", [{"sku": "SKU-1", "pricing": breaks}])
    portal.batch_update_pricing(
        [
            {"sku": "SKU-2", "price_list_slug": "trade", "pricing": [{"quantity": 1, "price": 3}]},
            {"sku": "SKU-1", "price_list_slug": "acc-7", "pricing": [{"quantity": 1, "price": 9}]},
        ]
    )
    assert list(portal.iter_pricing("trade")) == [
        {"sku": "SKU-1", "pricing": breaks},
        {"sku": "SKU-2", "pricing": [{"quantity": 1, "price": 3}]},
    ]
    assert [row["sku"] for row in portal.iter_pricing("acc-7")] == ["SKU-1"]


def test_pricing_an_empty_list_of_breaks_removes_the_sku_as_the_blank_break(
    portal: SparkLayerClient, sim: Sim
) -> None:
    # The portal refuses "pricing": [] [assumed by the simulator, as the docs only describe the
    # blank break]: a removal that succeeds proves the client sent the blank break.
    portal.create_price_list("trade", "Trade", "GBP")
    portal.patch_pricing("trade", price_rows(3))

    removed = portal.patch_pricing("trade", [{"sku": "SKU-00001", "pricing": []}])
    across = portal.batch_update_pricing(
        [{"sku": "SKU-00002", "price_list_slug": "trade", "pricing": []}]
    )

    assert removed == BatchResult(calls=1, sent=1, rejected=[])
    assert across == BatchResult(calls=1, sent=1, rejected=[])
    assert [row["sku"] for row in portal.iter_pricing("trade")] == ["SKU-00000"]
    assert statuses(sim.log(PRICING, "PATCH"))[-1] == 204
    assert statuses(sim.log("/api/v1/batch-update-pricing")) == [204]


def test_the_portals_price_for_a_customer_comes_back_line_by_line_in_calls_of_250(
    portal: SparkLayerClient, sim: Sim
) -> None:
    portal.create_price_list("trade", "Trade", "GBP")
    portal.patch_pricing("trade", price_rows(299))
    buyer = portal.put_customer(customer("ACC-1", price_lists=["trade"], discount_percentage=10))
    lines = [{"sku": f"SKU-{n:05d}", "quantity": 2} for n in range(300)]  # the last is unpriced

    priced = portal.fetch_customer_pricing(buyer["id"], lines)
    by_email = portal.fetch_customer_pricing(
        "acc-1@example.com", [{"sku": "SKU-00000", "quantity": 1}], lookup_by="email"
    )

    assert len(priced) == 300
    assert priced[0] == {"sku": "SKU-00000", "quantity": 2, "unit_price": 9.0, "error": None}
    assert priced[150]["unit_price"] == pytest.approx(round((10.0 + 1.5) * 0.9, 2))
    assert priced[299]["unit_price"] is None and "SKU-00299" in priced[299]["error"]
    assert by_email == [{"sku": "SKU-00000", "quantity": 1, "unit_price": 9.0, "error": None}]
    # 300 lines: 250 then 50 (where one SKU could not be priced: 207), then the email lookup.
    assert statuses(sim.log(FETCH_PRICING)) == [200, 207, 200]


def test_the_portals_price_for_an_unknown_customer_is_refused(portal: SparkLayerClient) -> None:
    with pytest.raises(InvalidRequestError):
        portal.fetch_customer_pricing("no-such-customer", [{"sku": "SKU-1", "quantity": 1}])


def test_stock_endpoints_round_trip(portal: SparkLayerClient, sim: Sim) -> None:
    created = portal.create_stock_location("Leeds warehouse", "LEEDS")
    assert created is not None and created["external_id"] == "LEEDS"
    assert portal.create_stock_location("Leeds warehouse", "LEEDS") is None
    assert {loc["external_id"] for loc in portal.list_stock_locations()} == {"default", "LEEDS"}

    written = portal.batch_update_stock(
        [
            {"stock_location_external_id": "default", "sku": "SKU-1", "stock_level": 7},
            {
                "stock_location_external_id": "LEEDS",
                "sku": "SKU-1",
                "stock_level": 2,
                "restock_date": "2030-01-15",
                "min_stock_level": 1,
            },
        ]
    )
    assert written == BatchResult(calls=1, sent=2, rejected=[])
    assert statuses(sim.log("/api/v1/batch-update-stock")) == [204]

    # The portal nests levels per SKU; the client keeps handing out one flat row per location.
    everywhere = portal.batch_fetch_stock(["SKU-1", "SKU-NONE"])
    assert {tuple(sorted(row)) for row in everywhere} == {
        (
            "min_stock_level",
            "restock_date",
            "sku",
            "stock_level",
            "stock_location_external_id",
            "stock_location_id",
        )
    }
    assert sorted(
        (s["sku"], s["stock_location_external_id"], s["stock_level"], s["restock_date"])
        for s in everywhere
    ) == [("SKU-1", "LEEDS", 2, "2030-01-15"), ("SKU-1", "default", 7, None)]
    default_only = portal.batch_fetch_stock(["SKU-1"], all_stock_locations=False)
    assert [(s["stock_location_external_id"], s["stock_level"]) for s in default_only] == [
        ("default", 7)
    ]


def test_purchase_endpoints_round_trip(portal: SparkLayerClient, sim: Sim) -> None:
    portal.put_customer(customer("ACC-1"))
    placed = sim.order("ACC-1", quantity=3, payment_method="platform_upfront")
    pid = purchase_id(placed)
    assert pid is not None

    assert portal.get_purchase(pid) == placed
    visible = placed["purchase_identifiers"]["visible"]
    assert purchase_id(portal.get_purchase(visible, lookup_by="visible")) == pid
    [paid] = portal.list_purchase_transactions(pid)
    assert paid["apply_to_balance"] is True and paid["total"] == placed["calculated_total"]

    updated = portal.set_internal_identifier(pid, "10001")
    assert updated["purchase_identifiers"]["internal"] == "10001"
    assert purchase_id(portal.get_purchase("10001", lookup_by="internal")) == pid

    # put_purchase takes the purchase as read: the server's calculated_* fields are left out.
    replaced = portal.put_purchase({**updated, "customer_reference": "PO-42"})
    assert replaced["customer_reference"] == "PO-42"
    assert replaced["purchase_identifiers"]["internal"] == "10001"
    assert replaced["calculated_total"] == placed["calculated_total"]
    assert [purchase_id(p) for p in portal.iter_purchases()] == [pid]


def test_the_hard_data_limits_are_the_documented_ones() -> None:
    assert HARD_LIMITS == {
        "price_lists": 15000,
        "customer_groups": 100,
        "customers": 250000,
        "products": 50000,
        "line_items": 250,
        "addresses": 500,
    }


def test_sync_log_round_trip(portal: SparkLayerClient) -> None:
    assert portal.get_sync_log("b2b-pipeline", "customers") is None
    entry = {
        "started_full_sync": "2025-01-31T06:00:00Z",
        "last_full_sync": "2025-01-31T06:01:30Z",
        "last_full_sync_succeeded": False,
        "errors": [{"external_id": "ACC-9", "message": "Unknown customer group WHOLESALE"}],
    }

    portal.put_sync_log("b2b-pipeline", "customers", entry)

    stored = portal.get_sync_log("b2b-pipeline", "customers")
    assert stored is not None
    assert {key: stored[key] for key in entry} == entry
