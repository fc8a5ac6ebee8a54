"""The operations console, driven over HTTP as a browser would, on the real product.

One world per module: the SparkLayer simulator on loopback, a seeded SQLite ERP, a DuckDB audit
file, the portal filled by the project's own price and customer syncs, and orders placed as
buyers would, then taken in by the project's own ``order_intake_job``, so the queue holds real
exceptions (a mispriced order, a self-registered company with a hostile name). The console runs
under uvicorn on a free loopback port in a thread; each test signs in with ``httpx`` and looks
at what a person would see, then at the audit trail and the ERP.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest
import uvicorn
from click.testing import CliRunner

from b2b_pipeline.connectors.sparklayer.purchases import purchase_id as pid
from b2b_pipeline.domain.pricing import resolve_unit_prices
from b2b_pipeline_tests.conftest import CLIENT_ID, CLIENT_SECRET, SITE_ID
from b2b_pipeline_tests.harness import Pipeline

BRAKE = "BRK-0001"  # an active SKU on every demo price list
HOSTILE_NAME = '<script>alert("owned")</script> =HYPERLINK("http://evil.example","pay")'
PASSWORDS = {
    "vera": ("viewer", "vera-password-1"),
    "omar": ("operations", "omar-password-1"),
    "priya": ("finance", "priya-password-1"),
}
SECURITY_LOG = "b2b_pipeline.console.security"


@dataclass
class World:
    console_url: str
    pipeline: Pipeline
    env: dict[str, str]
    # purchase -> its exception (dict), by what the tests do with it
    orders: dict[str, dict] = field(default_factory=dict)
    exceptions: dict[str, dict] = field(default_factory=dict)

    @property
    def audit(self):
        return self.pipeline.audit


def _erp_unit_price(pipeline: Pipeline, account: str, sku: str, quantity: int) -> float:
    prices = resolve_unit_prices(
        pd.DataFrame(
            {"line_key": [0], "account_code": [account], "sku": [sku], "quantity": [quantity]}
        ),
        pipeline.erp.read_customers(),
        pipeline.erp.read_price_lists(),
        pipeline.erp.read_price_list_items(),
    )
    return float(prices["erp_unit_price"].iloc[0])


def _order_exception(pipeline: Pipeline, purchase_id: str) -> dict:
    queue = pipeline.audit.exceptions(status="open")
    mine = queue[(queue["entity"] == "order") & (queue["entity_key"] == purchase_id)]
    assert len(mine) == 1, mine.to_dict("records")
    return mine.iloc[0].to_dict()


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # a thread of the test process
        pass


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from b2b_pipeline.config.settings import Settings
    from b2b_pipeline.connectors.audit.store import AuditStore
    from b2b_pipeline.connectors.erp.reference_edits import ReferenceErp
    from b2b_pipeline.connectors.sparklayer.client import SparkLayerClient
    from b2b_pipeline.console.app import create_app
    from b2b_pipeline.console.auth import add_user
    from b2b_pipeline.console.config import users_path
    from b2b_pipeline.demo import seed_erp
    from b2b_pipeline.simulator.server import SimulatorServer

    folder = tmp_path_factory.mktemp("console")
    data = folder / "data"
    data.mkdir()
    simulator = SimulatorServer(
        "127.0.0.1",
        0,
        site_id=SITE_ID,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        state_path=None,
    )
    simulator.start()
    env = {
        "B2B_DATA_DIR": str(data),
        "SPARKLAYER_BASE_URL": simulator.url,
        "SPARKLAYER_SITE_ID": SITE_ID,
        "SPARKLAYER_CLIENT_ID": CLIENT_ID,
        "SPARKLAYER_CLIENT_SECRET": CLIENT_SECRET,
        "SPARKLAYER_REQUESTS_PER_SECOND": "1000",
        "ERP_DATABASE_URL": f"sqlite:///{data / 'erp.sqlite'}",
        "B2B_AUDIT_DB": str(data / "audit.duckdb"),
        "DAGSTER_PORT": "3999",
    }
    unset = ("B2B_MAPPINGS", "B2B_ALERT_WEBHOOK_URL", "DAGSTER_HOME", "B2B_CONSOLE_USERS")
    gateway = ReferenceErp(env["ERP_DATABASE_URL"])
    portal = SparkLayerClient(
        simulator.url, SITE_ID, CLIENT_ID, CLIENT_SECRET, requests_per_second=1000.0
    )
    server: _Server | None = None
    thread: threading.Thread | None = None
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            for name in unset:
                patch.delenv(name, raising=False)
            gateway.create_schema()
            seed_erp(gateway)
            store = AuditStore(env["B2B_AUDIT_DB"])
            store.ensure_schema()
            pipeline = Pipeline(
                url=simulator.url, erp=gateway, audit=store, portal=portal, data_dir=data
            )
            world = World(console_url="", pipeline=pipeline, env=env)

            # The portal filled by the project's own syncs (prices first), as before any order.
            for job, config in (
                (
                    "price_sync_job",
                    {"ops": {"portal_price_lists": {"config": {"full_comparison": True}}}},
                ),
                ("customer_sync_job", {}),
            ):
                assert pipeline.run(job, config).success, job

            erp_price = _erp_unit_price(pipeline, "CUST0001", BRAKE, 4)
            cheap = round(erp_price - 1.25, 2)  # a price edited in the portal, not in the ERP
            for name, account in (("to_approve", "CUST0001"), ("to_refuse", "CUST0001")):
                world.orders[name] = pipeline.order(
                    account, [{"sku": BRAKE, "quantity": 4, "unit_price": cheap}]
                )
            # An account put on credit hold in the ERP just after its buyer ordered.
            world.orders["on_hold"] = pipeline.order("CUST0002", [{"sku": BRAKE, "quantity": 1}])
            gateway.set_credit_hold("CUST0002", True)
            # A company that registered on the portal by itself: it pays CUST0001's prices.
            newcomer = pipeline.register_company("Harbour Fixings Ltd", "buyer@harbour.example")
            world.orders["to_map"] = pipeline.order(
                newcomer["id"],
                [
                    {
                        "sku": BRAKE,
                        "quantity": 2,
                        "unit_price": _erp_unit_price(pipeline, "CUST0001", BRAKE, 2),
                    }
                ],
                customer_reference="HF-22",
            )
            company = pipeline.register_company(HOSTILE_NAME, "buyer@hostile.example")
            world.orders["hostile"] = pipeline.order(
                company["id"],
                [{"sku": BRAKE, "quantity": 2, "unit_price": erp_price}],
                customer_reference='=HYPERLINK("http://evil.example")',
            )
            assert pipeline.run("order_intake_job").success
            for name, purchase in world.orders.items():
                world.exceptions[name] = _order_exception(pipeline, pid(purchase))
            month = f"{datetime.now(UTC):%Y-%m}"
            assert pipeline.run("month_end_job", partition_key=month).success

            settings = Settings.from_env()
            for name, (role, password) in PASSWORDS.items():
                add_user(users_path(settings), name, role, password)
            app = create_app(settings=settings)

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = _Server(uvicorn.Config(app, log_level="warning", access_log=False))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "the console did not start"
            time.sleep(0.05)
        world.console_url = f"http://127.0.0.1:{port}"
        yield world
    finally:
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(timeout=10)
        portal.close()
        gateway.dispose()
        simulator.stop()


@pytest.fixture
def console(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    """The world's environment for this test (actions run the pipeline's jobs on it)."""
    for name, value in world.env.items():
        monkeypatch.setenv(name, value)
    for name in ("B2B_MAPPINGS", "B2B_ALERT_WEBHOOK_URL", "DAGSTER_HOME", "B2B_CONSOLE_USERS"):
        monkeypatch.delenv(name, raising=False)
    return world


def _client(world: World) -> httpx.Client:
    return httpx.Client(base_url=world.console_url, follow_redirects=False, timeout=120)


def _csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


@contextmanager
def signed_in(world: World, name: str) -> Iterator[httpx.Client]:
    with _client(world) as client:
        form = client.get("/login")
        response = client.post(
            "/login",
            data={"username": name, "password": PASSWORDS[name][1], "csrf_token": _csrf(form)},
        )
        assert response.status_code == 303, response.text
        yield client


def _text(html: str) -> str:
    """The page as text, tags removed and entities as the browser shows them."""
    import html as html_lib

    return html_lib.unescape(re.sub(r"<[^>]+>", " ", html))


# --- sign-in ------------------------------------------------------------------------------------


def test_nothing_is_reachable_without_signing_in(console: World):
    exception_id = console.exceptions["to_refuse"]["exception_id"]
    month = f"{datetime.now(UTC):%Y-%m}"
    with _client(console) as anonymous:
        for path in (
            "/",
            "/exceptions",
            f"/exceptions/{exception_id}",
            "/month-end",
            f"/month-end/{month}/close-pack-{month}.csv",
            "/prices?account=CUST0001&sku=BRK-0001",
            "/sync-health",
        ):
            response = anonymous.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/login"), path
        # An action without a session is turned away too, and changes nothing.
        refused = anonymous.post(
            f"/exceptions/{exception_id}/ignore", data={"reason": "not signed in"}
        )
        assert refused.status_code == 303 and refused.headers["location"] == "/login"
    assert console.audit.exception(exception_id)["status"] == "open"


def test_a_wrong_password_is_refused_and_logged_without_the_password(
    console: World, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger=SECURITY_LOG)
    wrong = "Tr0ub4dor&3-not-hers"
    with _client(console) as client:
        form = client.get("/login")
        response = client.post(
            "/login",
            data={"username": "priya", "password": wrong, "csrf_token": _csrf(form)},
        )
        assert response.status_code == 401
        assert "Wrong user name or password" in response.text
        assert wrong not in response.text
        # Still not signed in.
        assert client.get("/exceptions").status_code == 303
    refusals = [r.getMessage() for r in caplog.records if r.name == SECURITY_LOG]
    assert any("refused sign-in as 'priya'" in line for line in refusals), refusals
    assert all(wrong not in line for line in caplog.text.splitlines())


def test_the_session_cookie_is_httponly_and_samesite_and_signing_in_needs_the_form(
    console: World,
):
    with _client(console) as client:
        form = client.get("/login")
        cookie = form.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        assert "secure" not in cookie  # plain http on loopback; https sets it
        # A sign-in posted from elsewhere (no token from the form) is refused.
        forged = client.post(
            "/login", data={"username": "priya", "password": PASSWORDS["priya"][1]}
        )
        assert forged.status_code == 403
        assert client.get("/exceptions").status_code == 303


# --- the queue ----------------------------------------------------------------------------------


def test_the_queue_shows_the_order_number_the_buyer_sees_and_the_whole_message(console: World):
    exception = console.exceptions["to_refuse"]
    number = console.orders["to_refuse"]["purchase_identifiers"]["visible"]
    assert number.startswith("SL-")
    with signed_in(console, "vera") as client:
        page = client.get("/exceptions", params={"category": "pricing"})
        assert page.status_code == 200
    row = re.search(
        rf'<tr data-exception="{exception["exception_id"]}">(.*?)</tr>', page.text, re.S
    )
    assert row, page.text[:2000]
    shown = " ".join(_text(row.group(1)).split())
    assert number in shown
    assert " ".join(exception["message"].split()) in shown  # in full, its advice included
    assert "PRICING" in shown and "PRICE_MISMATCH" in shown and "CUST0001" in shown


def test_hostile_strings_from_an_order_render_as_text(console: World):
    exception = console.exceptions["hostile"]
    assert HOSTILE_NAME in exception["message"]
    status = console.audit.exception(exception["exception_id"])["status"]
    with signed_in(console, "vera") as client:
        queue = client.get("/exceptions", params={"category": "MAPPING", "status": status})
        detail = client.get(f"/exceptions/{exception['exception_id']}")
    for page in (queue, detail):
        assert page.status_code == 200
        assert "<script>alert" not in page.text
        assert "&lt;script&gt;alert(&#34;owned&#34;)&lt;/script&gt;" in page.text
        assert HOSTILE_NAME in _text(page.text)
        # No script but the console's own may run, whatever an order says.
        assert "script-src 'self'" in page.headers["content-security-policy"]


def test_the_filters_narrow_the_queue(console: World):
    with signed_in(console, "vera") as client:
        pricing = client.get("/exceptions", params={"category": "PRICING"}).text
        mapping = client.get(
            "/exceptions", params={"reason": "UNMAPPED_ACCOUNT", "older_than": ""}
        ).text
        other_account = client.get("/exceptions", params={"account": "cust0002"}).text
        old = client.get("/exceptions", params={"older_than": "30d"}).text
    refuse_id = console.exceptions["to_refuse"]["exception_id"]
    hostile_id = console.exceptions["hostile"]["exception_id"]
    assert refuse_id in pricing and hostile_id not in pricing
    assert hostile_id in mapping and refuse_id not in mapping
    assert refuse_id not in other_account and hostile_id not in other_account
    assert "No open exceptions match these filters" in old


def test_the_detail_page_shows_the_payload_both_totals_and_the_history(console: World):
    exception = console.exceptions["to_refuse"]
    purchase = console.orders["to_refuse"]
    with signed_in(console, "vera") as client:
        page = client.get(f"/exceptions/{exception['exception_id']}")
    assert page.status_code == 200
    text = " ".join(_text(page.text).split())
    portal_total = float(purchase["calculated_total"]["number"])
    erp_total = round(_erp_unit_price(console.pipeline, "CUST0001", BRAKE, 4) * 4 * 1.2, 2)
    assert re.search(r"data-portal-gross>\s*" + re.escape(f"{portal_total:,.2f} GBP"), page.text)
    assert re.search(r"data-erp-gross>\s*" + re.escape(f"{erp_total:,.2f} GBP"), page.text)
    assert "1 differ" in text and BRAKE in text
    assert pid(purchase) in text  # the payload as received
    assert 'data-action="exception_opened"' in page.text  # its history


# --- actions and roles -------------------------------------------------------------------------


def test_a_viewer_sees_no_buttons_and_a_forged_approve_is_refused(
    console: World, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger=SECURITY_LOG)
    exception_id = console.exceptions["to_refuse"]["exception_id"]
    with signed_in(console, "vera") as client:
        page = client.get(f"/exceptions/{exception_id}")
        assert page.status_code == 200
        assert "/approve" not in page.text and "/retry" not in page.text
        assert "/ignore" not in page.text
        response = client.post(
            f"/exceptions/{exception_id}/approve",
            data={"accept": "erp_price", "retry_now": "1", "csrf_token": _csrf(page)},
        )
        assert response.status_code == 403
        assert "may not approve a pricing difference" in response.text
    assert console.audit.exception(exception_id)["status"] == "open"
    refusals = [r.getMessage() for r in caplog.records if r.name == SECURITY_LOG]
    assert any("'vera' (viewer)" in line and "approve" in line for line in refusals)


def test_operations_may_not_approve_a_price_but_may_ignore(console: World):
    with signed_in(console, "omar") as client:
        exception_id = console.exceptions["to_refuse"]["exception_id"]
        page = client.get(f"/exceptions/{exception_id}")
        assert "/approve" not in page.text and "/ignore" in page.text
        refused = client.post(
            f"/exceptions/{exception_id}/approve",
            data={"accept": "portal_price", "csrf_token": _csrf(page)},
        )
        assert refused.status_code == 403
    assert console.audit.exception(exception_id)["status"] == "open"


def test_a_post_without_the_csrf_token_is_refused(console: World, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger=SECURITY_LOG)
    exception_id = console.exceptions["to_refuse"]["exception_id"]
    with signed_in(console, "priya") as client:
        missing = client.post(f"/exceptions/{exception_id}/approve", data={"accept": "erp_price"})
        wrong = client.post(
            f"/exceptions/{exception_id}/ignore",
            data={"reason": "forged", "csrf_token": "not-the-token"},
        )
    assert missing.status_code == 403 and wrong.status_code == 403
    assert "did not come from the console" in missing.text
    assert console.audit.exception(exception_id)["status"] == "open"
    refusals = [r.getMessage() for r in caplog.records if r.name == SECURITY_LOG]
    assert sum("CSRF token missing or wrong" in line for line in refusals) == 2


def test_finance_approves_at_the_erp_price_and_the_order_is_posted_under_her_name(
    console: World,
):
    exception_id = console.exceptions["to_approve"]["exception_id"]
    purchase = console.orders["to_approve"]
    number = purchase["purchase_identifiers"]["visible"]
    with signed_in(console, "priya") as client:
        page = client.get(f"/exceptions/{exception_id}")
        assert "/approve" in page.text
        response = client.post(
            f"/exceptions/{exception_id}/approve",
            data={
                "accept": "erp_price",
                "note": "customer agreed to the list price",
                "retry_now": "1",
                "csrf_token": _csrf(page),
            },
        )
        assert response.status_code == 303
        after = client.get(response.headers["location"])
    assert after.status_code == 200
    text = " ".join(_text(after.text).split())
    assert f"Order {number} approved by priya" in text
    assert f"Order {number} posted to the ERP" in text
    assert "Approved by priya (accept: erp_price)" in text  # once resolved by the pipeline too

    record = console.audit.exception(exception_id)
    assert record["status"] == "resolved"
    events = console.audit.events(entity="exception", entity_key=exception_id)
    approved = events[events["action"] == "exception_approved"]
    assert len(approved) == 1
    detail = json.loads(approved["detail"].iloc[0])
    assert detail["by"] == "priya"
    decision = detail["decision"]
    assert (json.loads(decision) if isinstance(decision, str) else decision) == {
        "accept": "erp_price"
    }
    orders = console.pipeline.sales_orders()
    posted = orders[orders["external_ref"] == pid(purchase)]
    erp_total = round(_erp_unit_price(console.pipeline, "CUST0001", BRAKE, 4) * 4 * 1.2, 2)
    assert len(posted) == 1 and float(posted["gross_total"].iloc[0]) == erp_total


def test_operations_retries_a_selection_after_a_fix_and_sees_what_went_through(console: World):
    held = console.exceptions["on_hold"]
    mispriced = console.exceptions["to_refuse"]
    assert held["reason_code"] == "ACCOUNT_ON_HOLD"
    console.pipeline.erp.set_credit_hold("CUST0002", False)  # credit control released it
    with signed_in(console, "omar") as client:
        queue = client.get("/exceptions", params={"status": "open"})
        assert 'name="exception_id"' in queue.text  # rows can be selected
        response = client.post(
            "/exceptions/retry",
            data={
                "exception_id": [held["exception_id"], mispriced["exception_id"]],
                "return_to": "/exceptions?status=open",
                "csrf_token": _csrf(queue),
            },
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/exceptions?status=open"
        after = client.get(response.headers["location"])
    text = " ".join(_text(after.text).split())
    number = console.orders["on_hold"]["purchase_identifiers"]["visible"]
    assert "Retried 2: 1 resolved, 1 still waiting." in text
    assert f"Order {number} posted to the ERP" in text
    assert "still waiting" in text and "PRICING" in after.text
    assert console.audit.exception(held["exception_id"])["status"] == "resolved"
    assert console.audit.exception(mispriced["exception_id"])["status"] == "open"
    orders = console.pipeline.sales_orders()
    assert (orders["external_ref"] == pid(console.orders["on_hold"])).sum() == 1
    requested = console.audit.events(entity="exception", entity_key=held["exception_id"])
    requested = requested[requested["action"] == "exception_retry_requested"]
    assert json.loads(requested["detail"].iloc[-1])["by"] == "omar"


def test_operations_maps_a_self_registered_company_and_its_order_is_posted(console: World):
    exception = console.exceptions["to_map"]
    assert exception["reason_code"] == "UNMAPPED_ACCOUNT"
    purchase = console.orders["to_map"]
    with signed_in(console, "omar") as client:
        page = client.get(f"/exceptions/{exception['exception_id']}")
        assert 'name="account_code"' in page.text
        unknown = client.post(
            f"/exceptions/{exception['exception_id']}/approve",
            data={"account_code": "NOPE99", "retry_now": "1", "csrf_token": _csrf(page)},
        )
        refused = client.get(unknown.headers["location"])
        assert "The ERP has no account NOPE99" in _text(refused.text)
        assert console.audit.exception(exception["exception_id"])["status"] == "open"
        response = client.post(
            f"/exceptions/{exception['exception_id']}/approve",
            data={"account_code": "CUST0001", "retry_now": "1", "csrf_token": _csrf(refused)},
        )
        after = client.get(response.headers["location"])
    text = " ".join(_text(after.text).split())
    assert "now points at ERP account CUST0001" in text and "posted to the ERP" in text
    orders = console.pipeline.sales_orders()
    posted = orders[orders["external_ref"] == pid(purchase)]
    assert posted[["account_code", "po_number"]].values.tolist() == [["CUST0001", "HF-22"]]
    customer = console.pipeline.portal.get_customer(
        purchase["customer_identifiers"]["sparklayer"], "sparklayer"
    )
    assert customer["accounting_id"] == "CUST0001"


def test_ignore_needs_a_reason_and_records_who(console: World):
    exception_id = console.exceptions["hostile"]["exception_id"]
    with signed_in(console, "omar") as client:
        page = client.get(f"/exceptions/{exception_id}")
        blank = client.post(
            f"/exceptions/{exception_id}/ignore",
            data={"reason": " ", "csrf_token": _csrf(page)},
        )
        shown = client.get(blank.headers["location"])
        assert "Say why it needs no action" in shown.text
        assert console.audit.exception(exception_id)["status"] == "open"
        done = client.post(
            f"/exceptions/{exception_id}/ignore",
            data={"reason": "a test company, not a customer", "csrf_token": _csrf(shown)},
        )
        result = client.get(done.headers["location"])
    assert "ignored by omar" in _text(result.text)
    record = console.audit.exception(exception_id)
    assert (record["status"], record["resolved_by"]) == ("ignored", "omar")


# --- the other pages -----------------------------------------------------------------------------


def test_price_lookup_returns_the_price_the_account_saw_on_a_date(console: World):
    today = datetime.now(UTC).date()
    expected = console.audit.price_on("CUST0001", BRAKE, today)
    assert not expected.empty
    with signed_in(console, "vera") as client:
        page = client.get(
            "/prices", params={"account": "CUST0001", "sku": BRAKE, "on": today.isoformat()}
        )
        unknown = client.get("/prices", params={"account": "NOPE99", "sku": BRAKE})
        long_ago = client.get(
            "/prices", params={"account": "CUST0001", "sku": BRAKE, "on": "2020-01-01"}
        )
    assert page.status_code == 200
    prices = re.findall(r"data-price>([^<]+)<", page.text)
    assert prices == [f"{float(p):,.2f} GBP" for p in expected["price"]]
    text = _text(page.text)
    assert str(expected["price_list_slug"].iloc[0]) in text and "now" in text
    assert "never gave an account NOPE99 price lists" in _text(unknown.text)
    assert "No price for BRK-0001" in _text(long_ago.text)


def test_month_end_page_renders_the_close_pack_and_its_csv_downloads(console: World):
    from b2b_pipeline.cli.main import cli

    month = f"{datetime.now(UTC):%Y-%m}"
    # The command line's close pack for the month (it reconciles the month again).
    printed = CliRunner().invoke(cli, ["reconcile", "--month", month, "--format", "json"])
    assert printed.exit_code in (0, 1), printed.output
    by_cli = json.loads(printed.stdout)
    lines = console.audit.reconciliation_lines(month)
    assert not lines.empty
    with signed_in(console, "vera") as client:
        page = client.get("/month-end", params={"month": month})
        csv = client.get(f"/month-end/{month}/close-pack-{month}.csv")
        pack = client.get(f"/month-end/{month}/close-pack-{month}.json")
        assert "/reconcile" not in page.text  # a viewer cannot start a run
    assert page.status_code == 200
    outcomes = dict(
        re.findall(r'data-outcome="([A-Z_]+)"><td>[A-Z_]+</td><td>([\d,]+)</td>', page.text)
    )
    counts = lines["outcome"].value_counts()
    for outcome, shown in outcomes.items():
        assert int(shown.replace(",", "")) == int(counts.get(outcome, 0)), outcome
    # The page's figures are the command line's, for the same month.
    assert {k: int(v.replace(",", "")) for k, v in outcomes.items()} == by_cli["outcomes"]
    totals = [
        json.loads(__import__("html").unescape(found))
        for found in re.findall(r'data-totals="([^"]+)"', page.text)
    ]
    assert totals == by_cli["totals"]
    assert csv.status_code == 200
    assert csv.headers["content-disposition"] == f'attachment; filename="close-pack-{month}.csv"'
    downloaded = pd.read_csv(__import__("io").StringIO(csv.text))
    assert sorted(downloaded["portal_order_id"].dropna()) == sorted(
        lines["portal_order_id"].dropna()
    )
    document = json.loads(pack.text)
    assert document["month"] == month and len(document["lines"]) == len(lines)
    held = [line for line in document["lines"] if line["outcome"] == "EXCEPTION_OPEN"]
    assert held and all(line["order_number"].startswith("SL-") for line in held)


def test_finance_starts_a_reconciliation_and_the_page_shows_its_outcome(console: World):
    month = f"{datetime.now(UTC):%Y-%m}"
    with signed_in(console, "priya") as client:
        page = client.get("/month-end", params={"month": month})
        assert "/reconcile" in page.text
        response = client.post(f"/month-end/{month}/reconcile", data={"csrf_token": _csrf(page)})
        assert response.status_code == 303
        after = client.get(response.headers["location"])
    text = " ".join(_text(after.text).split())
    assert f"Reconciled {month}" in text
    assert re.search(r"run [0-9a-f]{8}", text)
    assert "<svg" in after.text  # the daily chart, from the run's own orders
    daily = console.pipeline.data_dir / "reports" / f"close-pack-{month}-daily.csv"
    assert daily.exists()


def test_sync_health_shows_each_flow_with_its_last_run_and_a_link_to_it(console: World):
    with signed_in(console, "vera") as client:
        page = client.get("/sync-health")
    assert page.status_code == 200
    row = re.search(r'<tr data-job="customer_sync_job"[^>]*>(.*?)</tr>', page.text, re.S)
    assert row
    cells = " ".join(_text(row.group(1)).split())
    assert "on time" in cells and "succeeded" in cells
    run_id = (
        console.audit.latest_events("sync", per_key=True)
        .set_index("entity_key")
        .loc["customers", "run_id"]
    )
    assert f'href="http://127.0.0.1:3999/runs/{run_id}"' in row.group(1)
    orders = re.search(r'<tr data-job="order_intake_job"[^>]*>(.*?)</tr>', page.text, re.S)
    assert orders and "runs when there is work" in _text(orders.group(1))


# --- users ---------------------------------------------------------------------------------------


def test_add_user_writes_only_a_hash_and_the_user_can_sign_in(console: World):
    from b2b_pipeline.cli.console_cmd import console as console_command
    from b2b_pipeline.console.config import users_path

    password = "a-long-new-password"
    result = CliRunner().invoke(
        console_command, ["add-user", "nina", "--role", "OPERATIONS"], input=f"{password}\n"
    )
    assert result.exit_code == 0, result.output
    assert "Added console user nina (operations)" in result.output
    path = users_path()
    text = path.read_text()
    assert "nina" in text and "$argon2id$" in text and password not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    too_short = CliRunner().invoke(
        console_command, ["add-user", "tim", "--role", "viewer"], input="short\n"
    )
    assert too_short.exit_code == 2 and "at least" in too_short.output
    with _client(console) as client:
        form = client.get("/login")
        response = client.post(
            "/login", data={"username": "nina", "password": password, "csrf_token": _csrf(form)}
        )
        assert response.status_code == 303
        page = client.get("/exceptions")
        assert page.status_code == 200 and "operations" in page.text


def test_demo_credentials_are_made_once_and_kept_private(tmp_path: Path):
    from b2b_pipeline.config.settings import Settings
    from b2b_pipeline.console import demo_credentials
    from b2b_pipeline.console.auth import UserDirectory
    from b2b_pipeline.console.config import users_path

    settings = Settings.from_env()  # the test's own empty data folder
    user, password = demo_credentials(settings)
    assert (user, password) == demo_credentials(settings)
    secret = settings.data_dir / "console-demo-password"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert password not in users_path(settings).read_text()
    signed = UserDirectory(users_path(settings)).authenticate(user, password)
    assert signed is not None and signed.role == "admin"


def test_the_console_command_serves_the_sign_in_page_and_logs_refusals(tmp_path: Path):
    """``b2b-pipeline console`` as scripts/start runs it: its own process, its own port."""
    import os
    import signal
    import subprocess
    import sys

    from b2b_pipeline.config.settings import Settings
    from b2b_pipeline.console import demo_credentials

    user, password = demo_credentials(Settings.from_env())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = "from b2b_pipeline.cli.console_cmd import console; console()"
    process = subprocess.Popen(
        [sys.executable, "-c", command, "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, "DAGSTER_HOME": ""},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                first = httpx.get(f"{url}/exceptions", follow_redirects=False, timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "the console did not start"
                time.sleep(0.2)
        assert first.status_code == 303 and first.headers["location"].startswith("/login")
        with httpx.Client(base_url=url, follow_redirects=False, timeout=10) as client:
            form = client.get("/login")
            wrong = client.post(
                "/login",
                data={"username": user, "password": password + "x", "csrf_token": _csrf(form)},
            )
            assert wrong.status_code == 401
            right = client.post(
                "/login",
                data={"username": user, "password": password, "csrf_token": _csrf(form)},
            )
            assert right.status_code == 303
            assert client.get("/sync-health").status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        output, errors = process.communicate(timeout=20)
    assert f"Console on http://127.0.0.1:{port}" in output
    assert f"refused sign-in as '{user}'" in errors
    assert password not in output + errors
