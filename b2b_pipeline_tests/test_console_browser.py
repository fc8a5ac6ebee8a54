"""The operations console in a real browser: headless Chromium (Debian's) through Playwright.

One world for the module: the SparkLayer simulator on loopback, a seeded SQLite ERP and a
DuckDB audit file; the portal filled by the project's own price and customer syncs; orders
placed as buyers place them and taken in by the project's own ``order_intake_job``, so the queue
holds real exceptions (two mispriced orders, an order of an account put on hold, a
self-registered company, a company with a hostile name). The console is served by its own
command (``b2b-pipeline console``) in its own process on a free loopback port, as
``scripts/start`` serves it; one Chromium serves every test, each test in its own browser
context (its own cookies) signed in through the sign-in form.

What a person does is done with the mouse and keyboard: pick a filter, open an exception, tick,
type, press the button. What they would notice is read from the page; what must have happened
is read from the ERP database itself (``sqlite3``) and the audit trail. Every page is watched
for JavaScript dialogs, uncaught errors and Content-Security-Policy refusals: none may happen.

Screenshots of the pages the runbook's routines use go to ``build/test-artefacts/screenshots``
(and ``B2B_SCREENSHOTS_DIR`` when set: ``B2B_SCREENSHOTS_DIR=docs/screenshots`` refreshes the
runbook's pictures).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from b2b_pipeline.connectors.sparklayer.purchases import purchase_id as pid
from b2b_pipeline_tests.browser_support import (
    PRODUCT_PREFIXES,
    VIEWPORT,
    ConsoleProcess,
    Watched,
    launch_chromium,
    screenshot,
)
from b2b_pipeline_tests.conftest import CLIENT_ID, CLIENT_SECRET, SITE_ID
from b2b_pipeline_tests.harness import Pipeline

# Several pipeline runs, a console process and a browser: about a minute for the module.
pytestmark = pytest.mark.slow

BRAKE = "BRK-0001"  # an active SKU on every demo price list
SCRIPT = "<script>alert(1)</script>"
FORMULA = '=HYPERLINK("http://x","y")'
HOSTILE_COMPANY = f"{SCRIPT} Ltd"
USERS = {
    "vera": ("viewer", "vera-password-1"),
    "omar": ("operations", "omar-password-1"),
    "priya": ("finance", "priya-password-1"),
    "ada": ("admin", "ada-password-12"),
}
NAME_OF_ROLE = {role: name for name, (role, _) in USERS.items()}
# What each role may do with a price difference, and on the month page (the runbook's table).
MAY = {
    "viewer": {"Approve": False, "Retry": False, "Ignore": False, "Mark resolved": False},
    "operations": {"Approve": False, "Retry": True, "Ignore": True, "Mark resolved": True},
    "finance": {"Approve": True, "Retry": True, "Ignore": True, "Mark resolved": True},
    "admin": {"Approve": True, "Retry": True, "Ignore": True, "Mark resolved": True},
}
MAY_RECONCILE = {"viewer": False, "operations": False, "finance": True, "admin": True}


@dataclass
class World:
    console: ConsoleProcess
    pipeline: Pipeline
    env: dict[str, str]
    erp_file: Path
    month: str
    orders: dict[str, dict] = field(default_factory=dict)
    exceptions: dict[str, dict] = field(default_factory=dict)
    companies: dict[str, dict] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.console.url

    def exception_id(self, name: str) -> str:
        return str(self.exceptions[name]["exception_id"])

    def status(self, name: str) -> str:
        record = self.pipeline.audit.exception(self.exception_id(name))
        assert record is not None
        return str(record["status"])

    def number(self, name: str) -> str:
        return str(self.orders[name]["purchase_identifiers"]["visible"])

    def erp_order(self, name: str) -> list[sqlite3.Row]:
        """The ERP's sales order for an order of the world, read from the ERP database."""
        with sqlite3.connect(self.erp_file) as db:
            db.row_factory = sqlite3.Row
            return db.execute(
                "SELECT * FROM erp_sales_orders WHERE external_ref = ?", (pid(self.orders[name]),)
            ).fetchall()

    def erp_lines(self, order_no: int) -> list[sqlite3.Row]:
        with sqlite3.connect(self.erp_file) as db:
            db.row_factory = sqlite3.Row
            return db.execute(
                "SELECT * FROM erp_sales_order_lines WHERE order_no = ? ORDER BY line_no",
                (order_no,),
            ).fetchall()


def _open_exception(pipeline: Pipeline, purchase: dict) -> dict:
    queue = pipeline.audit.exceptions(status="open")
    mine = queue[(queue["entity"] == "order") & (queue["entity_key"] == pid(purchase))]
    assert len(mine) == 1, mine.to_dict("records")
    return mine.iloc[0].to_dict()


def _phone_order() -> tuple[pd.DataFrame, pd.DataFrame]:
    order = {
        "external_ref": "PHONE-0001", "account_code": "CUST0003", "po_number": "BY-PHONE",
        "order_date": pd.Timestamp.now(tz="UTC"), "status": "TO_BE_INVOICED",
        "payment_method": "on_account", "payment_terms": "NET30", "tax_code": "STANDARD",
        "currency": "GBP", "net_total": 30.0, "tax_total": 6.0, "gross_total": 36.0,
    }  # fmt: skip
    line = {
        "external_ref": "PHONE-0001", "line_no": 1, "sku": BRAKE, "quantity": 3,
        "unit_price": 10.0, "line_net": 30.0, "tax_amount": 6.0,
    }  # fmt: skip
    return pd.DataFrame([order]), pd.DataFrame([line])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from b2b_pipeline.connectors.audit.store import AuditStore
    from b2b_pipeline.connectors.erp.reference_edits import ReferenceErp
    from b2b_pipeline.connectors.sparklayer.client import SparkLayerClient
    from b2b_pipeline.console.auth import add_user
    from b2b_pipeline.demo import seed_erp
    from b2b_pipeline.simulator.server import SimulatorServer

    folder = tmp_path_factory.mktemp("console-browser")
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
    erp_file = data / "erp.sqlite"
    env = {
        "B2B_DATA_DIR": str(data),
        "SPARKLAYER_BASE_URL": simulator.url,
        "SPARKLAYER_SITE_ID": SITE_ID,
        "SPARKLAYER_CLIENT_ID": CLIENT_ID,
        "SPARKLAYER_CLIENT_SECRET": CLIENT_SECRET,
        "SPARKLAYER_REQUESTS_PER_SECOND": "1000",
        "ERP_DATABASE_URL": f"sqlite:///{erp_file}",
        "B2B_AUDIT_DB": str(data / "audit.duckdb"),
        "DAGSTER_PORT": "3999",
    }
    gateway = ReferenceErp(env["ERP_DATABASE_URL"])
    portal = SparkLayerClient(
        simulator.url, SITE_ID, CLIENT_ID, CLIENT_SECRET, requests_per_second=1000.0
    )
    console: ConsoleProcess | None = None
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name in list(os.environ):
                if name.startswith(PRODUCT_PREFIXES):
                    patch.delenv(name)
            for name, value in env.items():
                patch.setenv(name, value)
            gateway.create_schema()
            seed_erp(gateway)
            store = AuditStore(env["B2B_AUDIT_DB"])
            store.ensure_schema()
            pipeline = Pipeline(
                url=simulator.url, erp=gateway, audit=store, portal=portal, data_dir=data
            )
            for job, config in (
                (
                    "price_sync_job",
                    {"ops": {"portal_price_lists": {"config": {"full_comparison": True}}}},
                ),
                ("customer_sync_job", {}),
            ):
                assert pipeline.run(job, config).success, job

            erp_price = pipeline.erp_unit_price("CUST0001", BRAKE, 4)
            cheap = round(erp_price - 1.25, 2)  # edited in the portal, not in the ERP
            orders: dict[str, dict] = {}
            for name in ("to_approve", "to_leave"):
                orders[name] = pipeline.order(
                    "CUST0001",
                    [{"sku": BRAKE, "quantity": 4, "unit_price": cheap}],
                    customer_reference=f"PO-{name.upper()}",
                )
            orders["on_hold"] = pipeline.order("CUST0002", [{"sku": BRAKE, "quantity": 1}])
            gateway.set_credit_hold("CUST0002", True)
            companies = {
                "to_fix": pipeline.register_company("Harbour Fixings Ltd", "buyer@harbour.example"),
                "hostile": pipeline.register_company(HOSTILE_COMPANY, "buyer@hostile.example"),
            }
            orders["to_fix"] = pipeline.order(
                companies["to_fix"]["id"],
                [
                    {
                        "sku": BRAKE,
                        "quantity": 2,
                        "unit_price": pipeline.erp_unit_price("CUST0001", BRAKE, 2),
                    }
                ],
                customer_reference="HF-22",
            )
            orders["hostile"] = pipeline.order(
                companies["hostile"]["id"],
                [{"sku": BRAKE, "quantity": 2, "unit_price": erp_price}],
                customer_reference=FORMULA,
            )
            assert pipeline.run("order_intake_job").success
            # An order keyed into the ERP by hand (a phone order): no portal order matches it,
            # so the month has one difference finance must explain.
            gateway.post_sales_orders(*_phone_order())
            month = f"{datetime.now(UTC):%Y-%m}"
            assert pipeline.run("month_end_job", partition_key=month).success
            for name, (role, password) in USERS.items():
                add_user(data / "console-users.yaml", name, role, password)

        console = ConsoleProcess(env, folder / "console.log")
        world = World(
            console=console,
            pipeline=pipeline,
            env=env,
            erp_file=erp_file,
            month=month,
            orders=orders,
            companies=companies,
        )
        for name, purchase in orders.items():
            world.exceptions[name] = _open_exception(pipeline, purchase)
        console.wait_until_serving()
        yield world
    finally:
        if console is not None:
            console.stop()
        portal.close()
        gateway.dispose()
        simulator.stop()


@pytest.fixture(scope="module")
def browser(world: World) -> Iterator[Browser]:
    # After the world: its pipeline runs (Dagster, in this process) must not meet the event
    # loop Playwright's sync API keeps running while a browser is open.
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


@contextmanager
def browsing(browser: Browser, world: World, *, expected_status: tuple[int, ...] = ()):
    """A fresh browser context (no cookies) on the console; on the way out, no dialog, no
    JavaScript error and no CSP refusal may have happened in it."""
    context = browser.new_context(base_url=world.url, viewport=VIEWPORT)
    context.set_default_timeout(60_000)  # an action runs a pipeline job: seconds, not ms
    page = context.new_page()
    watched = Watched.open(page)
    try:
        yield watched
        assert watched.problems(expected_status=expected_status) == []
    finally:
        context.close()


def sign_in(page: Page, name: str) -> None:
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(USERS[name][1])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


@contextmanager
def signed_in(browser: Browser, world: World, name: str, **kwargs) -> Iterator[Page]:
    with browsing(browser, world, **kwargs) as watched:
        page = watched.page
        page.goto("/login")
        sign_in(page, name)
        expect(page).to_have_url(f"{world.url}/exceptions")
        yield page


def text_of(page: Page, selector: str = "main") -> str:
    """What a person reads in that part of the page, spaces as they see them."""
    return " ".join(page.locator(selector).inner_text().split())


def csrf_token(page: Page) -> str:
    return str(page.locator('input[name="csrf_token"]').first.get_attribute("value"))


# --- signing in ------------------------------------------------------------------------------


def test_nothing_opens_without_a_session_and_sign_in_returns_to_the_page(
    browser: Browser, world: World
):
    exception_id = world.exception_id("to_leave")
    with browsing(browser, world) as watched:
        page = watched.page
        for path in ("/", "/exceptions", "/month-end", "/prices", "/sync-health"):
            page.goto(path)
            expect(page).to_have_url(re.compile(r"/login\?next="))
            expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        page.goto(f"/exceptions/{exception_id}")
        expect(page).to_have_url(re.compile(r"/login\?next=%2Fexceptions%2F"))
        screenshot(page, "sign-in")
        # An action posted without a session is turned away as well, and changes nothing.
        refused = page.request.post(
            f"/exceptions/{exception_id}/ignore", form={"reason": "no session"}, max_redirects=0
        )
        assert refused.status == 303 and refused.headers["location"] == "/login"
        sign_in(page, "vera")
        expect(page).to_have_url(f"{world.url}/exceptions/{exception_id}")
        assert world.number("to_leave") in text_of(page, "h1")
        # The session as the browser holds it: out of reach of any script, never sent along
        # with a form posted from another site.
        cookies = page.context.cookies()
        assert cookies and all(c["httpOnly"] and c["sameSite"] == "Lax" for c in cookies)
        assert page.evaluate("() => document.cookie") == ""
    assert world.status("to_leave") == "open"


def test_a_wrong_password_is_refused_in_the_page(browser: Browser, world: World):
    with browsing(browser, world, expected_status=(401,)) as watched:
        page = watched.page
        page.goto("/exceptions")
        page.get_by_label("User name").fill("priya")
        page.get_by_label("Password").fill("not-her-password")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_have_text("Wrong user name or password.")
        assert page.get_by_label("Password").input_value() == ""  # never echoed back
        page.goto("/exceptions")
        expect(page).to_have_url(re.compile(r"/login"))


@pytest.mark.parametrize("role", ["viewer", "operations", "finance", "admin"])
def test_each_role_signs_in_and_sees_only_the_actions_it_may_take(
    browser: Browser, world: World, role: str
):
    name = NAME_OF_ROLE[role]
    with signed_in(browser, world, name) as page:
        expect(page.locator("header .who")).to_have_text(f"{name} {role}")
        page.goto(f"/exceptions/{world.exception_id('to_leave')}")
        for button, allowed in MAY[role].items():
            shown = page.get_by_role("button", name=button, exact=True)
            expect(shown).to_have_count(1 if allowed else 0)
        page.goto("/exceptions?status=open")
        expect(page.get_by_role("button", name="Retry the selected")).to_have_count(
            1 if MAY[role]["Retry"] else 0
        )
        expect(page.locator('input[name="exception_id"]')).to_have_count(
            page.locator("table.queue tbody tr").count() if MAY[role]["Retry"] else 0
        )
        page.goto(f"/month-end?month={world.month}")
        expect(page.get_by_role("button", name=re.compile(r"^Reconcile"))).to_have_count(
            1 if MAY_RECONCILE[role] else 0
        )
        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(f"{world.url}/login")
        page.goto("/exceptions")
        expect(page).to_have_url(re.compile(r"/login\?next="))


# --- refusals ----------------------------------------------------------------------------------


def test_a_viewer_has_no_buttons_and_a_post_is_refused_403(browser: Browser, world: World):
    exception_id = world.exception_id("to_leave")
    with signed_in(browser, world, "vera", expected_status=(403,)) as page:
        page.goto(f"/exceptions/{exception_id}")
        expect(page.locator("section.actions")).to_have_count(0)
        expect(page.locator("main form[method=post]")).to_have_count(0)
        # The same POST the finance user's Approve button makes, with this session's own
        # token: the role is what refuses it.
        for action, form in (
            ("approve", {"accept": "erp_price", "retry_now": "1"}),
            ("retry", {}),
            ("ignore", {"reason": "a viewer tries"}),
            ("resolve", {"note": "a viewer tries"}),
        ):
            response = page.request.post(
                f"/exceptions/{exception_id}/{action}",
                form={**form, "csrf_token": csrf_token(page)},
                max_redirects=0,
            )
            assert response.status == 403, action
            assert "Your role (viewer) may not" in response.text(), action
        refused = page.request.post(
            "/exceptions/retry",
            form={"exception_id": exception_id, "csrf_token": csrf_token(page)},
            max_redirects=0,
        )
        assert refused.status == 403
    assert world.status("to_leave") == "open"


def test_a_forged_post_without_the_csrf_token_is_refused(browser: Browser, world: World):
    exception_id = world.exception_id("to_leave")
    with signed_in(browser, world, "priya", expected_status=(403,)) as page:
        page.goto(f"/exceptions/{exception_id}")
        ignore = page.locator("form.ignore")
        # The form as a forger would send it: the session cookie goes, the token does not.
        ignore.locator('input[name="csrf_token"]').evaluate("input => input.remove()")
        ignore.get_by_label("Why no action is needed").fill("forged")
        ignore.get_by_role("button", name="Ignore").click()
        expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
        assert "did not come from the console" in text_of(page)
        # A token that is not the session's is no better.
        page.go_back()
        page.reload()
        ignore = page.locator("form.ignore")
        ignore.locator('input[name="csrf_token"]').evaluate("input => input.value = 'forged'")
        ignore.get_by_label("Why no action is needed").fill("forged again")
        ignore.get_by_role("button", name="Ignore").click()
        expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
        # Nor a request made outside any form.
        response = page.request.post(
            f"/exceptions/{exception_id}/approve",
            form={"accept": "portal_price", "retry_now": "1"},
            max_redirects=0,
        )
        assert response.status == 403
    assert world.status("to_leave") == "open"
    assert world.erp_order("to_leave") == []


# --- hostile data ------------------------------------------------------------------------------


def test_hostile_strings_from_an_order_render_as_text(browser: Browser, world: World):
    exception_id = world.exception_id("hostile")
    with browsing(browser, world) as watched:
        page = watched.page
        # The watch works: a script that does run opens a dialog it records.
        page.goto("/login")
        page.evaluate("() => window.setTimeout(() => alert('probe'), 0)")
        page.wait_for_timeout(200)
        assert watched.dialogs == ["alert: probe"]
        watched.dialogs.clear()

        sign_in(page, "omar")
        page.goto("/exceptions?status=open&category=MAPPING")
        row = page.locator(f'tr[data-exception="{exception_id}"]')
        expect(row).to_have_count(1)
        assert SCRIPT in row.inner_text()
        page.goto(f"/exceptions/{exception_id}")
        # The company's name in the message and the buyer's PO number, as typed.
        assert SCRIPT in page.locator("p.message").inner_text()
        expect(page.locator("dd.po")).to_have_text(FORMULA)
        # Nothing became markup: the console's own two scripts are the only ones, and no
        # link points where the formula does.
        scripts = page.evaluate("() => [...document.scripts].map(s => s.src)")
        assert sorted(scripts) == [
            f"{world.url}/static/console.js",
            f"{world.url}/static/htmx.min.js",
        ]
        assert page.locator('a[href^="http://x"]').count() == 0
        assert page.locator("main script, main iframe, main object").count() == 0
        page.wait_for_timeout(300)  # time for anything deferred to run
        assert watched.dialogs == []


# --- the operations routine ----------------------------------------------------------------------


def test_operations_retries_an_order_after_its_mapping_is_fixed_and_sees_it_posted(
    browser: Browser, world: World
):
    exception_id = world.exception_id("to_fix")
    number = world.number("to_fix")
    assert world.exceptions["to_fix"]["reason_code"] == "UNMAPPED_ACCOUNT"
    assert world.erp_order("to_fix") == []
    with signed_in(browser, world, "omar") as page:
        # The daily routine: the open queue, narrowed to one category without a page load.
        page.goto("/exceptions")
        open_now = len(world.pipeline.audit.exceptions(status="open"))
        expect(page.locator("table.queue tbody tr")).to_have_count(open_now)
        screenshot(page, "queue")
        page.get_by_label("Category").select_option("MAPPING")
        expect(page).to_have_url(re.compile(r"category=MAPPING"))
        row = page.locator(f'tr[data-exception="{exception_id}"]')
        expect(row).to_be_visible()
        expect(
            page.locator(f'tr[data-exception="{world.exception_id("to_leave")}"]')
        ).to_have_count(0)
        assert number in row.inner_text() and "UNMAPPED_ACCOUNT" in row.inner_text()
        row.get_by_role("link", name=exception_id).click()
        expect(page.locator("h1")).to_contain_text(number)

        # The account manager gives the portal company its ERP account code, in the portal.
        world.pipeline.map_company(world.companies["to_fix"]["id"], "CUST0001")

        page.locator("form.retry").get_by_role("button", name="Retry").click()
        expect(page.locator(".flashes")).to_contain_text(f"Order {number} posted to the ERP")
        screenshot(page, "exception-retried")
        expect(page.locator("h1 .status")).to_have_text("resolved")
        history = page.locator('tr[data-action="exception_retry_requested"]')
        expect(history).to_contain_text("omar")

    posted = world.erp_order("to_fix")
    assert [(r["account_code"], r["po_number"]) for r in posted] == [("CUST0001", "HF-22")]
    assert world.status("to_fix") == "resolved"
    events = world.pipeline.audit.events(entity="exception", entity_key=exception_id)
    asked = events[events["action"] == "exception_retry_requested"]
    assert [json.loads(d)["by"] for d in asked["detail"]] == ["omar"]


def test_operations_retries_a_selection_after_credit_control_releases_a_hold(
    browser: Browser, world: World
):
    held = world.exception_id("on_hold")
    number = world.number("on_hold")
    assert world.exceptions["on_hold"]["reason_code"] == "ACCOUNT_ON_HOLD"
    world.pipeline.erp.set_credit_hold("CUST0002", False)  # credit control, in the ERP
    with signed_in(browser, world, "omar") as page:
        page.goto("/exceptions?category=AUTHORISATION")
        rows = page.locator("table.queue tbody tr")
        expect(rows).to_have_count(1)
        page.get_by_label("Select every row").check()  # console.js ticks every row
        for box in page.locator('input[name="exception_id"]').all():
            expect(box).to_be_checked()
        page.get_by_role("button", name="Retry the selected").click()
        expect(page).to_have_url(f"{world.url}/exceptions?category=AUTHORISATION")
        expect(page.locator(".flashes")).to_contain_text("Retried 1: 1 resolved")
        expect(page.locator(".flashes")).to_contain_text(f"Order {number} posted to the ERP")
        expect(page.locator(f'tr[data-exception="{held}"]')).to_have_count(0)
        page.get_by_role("link", name=re.compile(r"^Resolved")).click()
        expect(page.locator(f'tr[data-exception="{held}"]')).to_be_visible()
    assert [r["account_code"] for r in world.erp_order("on_hold")] == ["CUST0002"]
    assert world.status("on_hold") == "resolved"
    events = world.pipeline.audit.events(entity="exception", entity_key=held)
    asked = events[events["action"] == "exception_retry_requested"]
    assert [json.loads(d)["by"] for d in asked["detail"]] == ["omar"]


# --- the finance routine -------------------------------------------------------------------------


def test_finance_approves_a_price_difference_at_the_erp_price_and_the_erp_has_that_price(
    browser: Browser, world: World
):
    exception_id = world.exception_id("to_approve")
    number = world.number("to_approve")
    erp_unit = world.pipeline.erp_unit_price("CUST0001", BRAKE, 4)
    portal_unit = round(erp_unit - 1.25, 2)  # what the buyer was charged (the world's order)
    with signed_in(browser, world, "priya") as page:
        page.goto("/exceptions?category=PRICING")
        page.locator(f'tr[data-exception="{exception_id}"]').get_by_role(
            "link", name=exception_id
        ).click()
        expect(page.locator("[data-erp-gross]")).to_have_text(f"{erp_unit * 4 * 1.2:,.2f} GBP")
        expect(page.locator("table.lines tr.differs")).to_have_count(1)
        approve = page.locator("form.approve")
        approve.get_by_label(re.compile(r"Post at the ERP's price")).check()
        approve.get_by_label(re.compile(r"^Note")).fill("customer agreed to the list price")
        expect(approve.get_by_label(re.compile(r"Retry now"))).to_be_checked()
        # The picture the runbook needs: both totals, the line that differs, the decision.
        page.locator("section.comparison").evaluate(
            "el => window.scrollTo(0, el.getBoundingClientRect().top + window.scrollY - 8)"
        )
        screenshot(page, "exception-pricing")
        approve.get_by_role("button", name="Approve").click()
        expect(page.locator(".flashes")).to_contain_text(f"Order {number} approved by priya")
        expect(page.locator(".flashes")).to_contain_text(f"Order {number} posted to the ERP")
        expect(page.locator("h1 .status")).to_have_text("resolved")
        approved_by = page.locator("dl.facts dt", has_text="Approved by").locator(
            "xpath=following-sibling::dd[1]"
        )
        expect(approved_by).to_have_text("priya (accept: erp_price)")
        screenshot(page, "exception-approved")

    posted = world.erp_order("to_approve")
    assert len(posted) == 1
    lines = world.erp_lines(posted[0]["order_no"])
    assert [(r["sku"], r["quantity"], r["unit_price"]) for r in lines] == [(BRAKE, 4, erp_unit)]
    assert lines[0]["unit_price"] != portal_unit
    assert posted[0]["gross_total"] == round(erp_unit * 4 * 1.2, 2)
    record = world.pipeline.audit.exception(exception_id)
    assert record is not None and record["status"] == "resolved"
    events = world.pipeline.audit.events(entity="exception", entity_key=exception_id)
    approved = events[events["action"] == "exception_approved"]
    assert [json.loads(d)["by"] for d in approved["detail"]] == ["priya"]


def _figures(page: Page, table: str) -> list[list[str]]:
    return [
        [" ".join(cell.split()) for cell in row.locator("td").all_inner_texts()]
        for row in page.locator(f"#{table} tbody tr").all()
    ]


def _money(value: float | None) -> str:
    return "–" if value is None else f"{value:,.2f}"


def _cli_close_pack(world: World) -> dict:
    """``b2b-pipeline reconcile --month M --format json``: the command line's close pack."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(PRODUCT_PREFIXES)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "b2b_pipeline.cli.main",
            "reconcile",
            "--month",
            world.month,
            "--format",
            "json",
        ],
        env={**clean, **world.env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def test_the_month_page_shows_the_figures_the_command_line_prints_for_that_month(
    browser: Browser, world: World
):
    month = world.month
    with signed_in(browser, world, "priya") as page:
        page.get_by_role("link", name="Month end").click()
        expect(page.get_by_role("heading", name=f"Month end: {month}")).to_be_visible()
        page.get_by_role("button", name=re.compile(rf"^Reconcile {month}")).click()
        expect(page.locator(".flashes")).to_contain_text(f"Reconciled {month}")
        shown = {
            "totals": _figures(page, "totals"),
            "outcomes": _figures(page, "outcomes"),
            "per_account": _figures(page, "per-account"),
        }
        screenshot(page, "month-end")

        cli = _cli_close_pack(world)  # reconciles the month again: the same figures
        assert shown["totals"] == [
            [
                row["currency"] or "–",
                f"{row['portal_orders']:,}",
                _money(row["portal_gross"]),
                f"{row['erp_orders']:,}",
                _money(row["erp_gross"]),
                _money(row["variance"]),
                f"{row['unexplained_lines']:,}",
                _money(row["unexplained_money"]),
            ]
            for row in cli["totals"]
        ]
        unexplained = cli["unexplained"]["count"]
        summary = text_of(page, "p.summary")
        if unexplained:
            assert f"{unexplained:,} order(s) unexplained" in summary
        else:
            assert "Every order matched, is held in the queue with a reason" in summary
        counts = {row[0]: int(row[1].replace(",", "")) for row in shown["outcomes"]}
        assert {k: n for k, n in counts.items() if n} == {
            k: n for k, n in cli["outcomes"].items() if n
        }
        assert sum(int(row[1].replace(",", "")) for row in shown["outcomes"]) == len(cli["lines"])
        expected_accounts = sorted(
            [
                row["account_code"] or "–",
                row["currency"] or "–",
                f"{row['portal_orders']:,}",
                f"{row['erp_orders']:,}",
                _money(row["portal_gross"]),
                _money(row["erp_gross"]),
                _money(row["variance"]),
                f"{row['missing_in_erp']:,}",
                f"{row['missing_in_portal']:,}",
                f"{row['amount_mismatches']:,}",
                f"{row['open_exceptions']:,}",
            ]
            for row in cli["summary"]
        )
        assert sorted(shown["per_account"]) == expected_accounts

        # The page after the command line's run, and its JSON download: the same figures.
        page.reload()
        assert _figures(page, "totals") == shown["totals"]
        with page.expect_download() as download:
            page.get_by_role("link", name="JSON").click()
        assert download.value.suggested_filename == f"close-pack-{month}.json"
        pack = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
        assert pack["totals"] == cli["totals"] and pack["outcomes"] == cli["outcomes"]


# --- the other pages ---------------------------------------------------------------------------


def test_price_lookup_and_sync_health_in_the_browser(browser: Browser, world: World):
    today = datetime.now(UTC).date().isoformat()
    expected = world.pipeline.audit.price_on("CUST0001", BRAKE, datetime.now(UTC).date())
    assert not expected.empty
    with signed_in(browser, world, "vera") as page:
        page.get_by_role("link", name="Prices").click()
        page.get_by_label("Account").fill("CUST0001")
        page.get_by_label("SKU").fill(BRAKE)
        page.get_by_label("On (UTC)").fill(today)
        page.get_by_role("button", name="Look up").click()
        expect(page.locator("[data-price]")).to_have_text(
            [f"{float(p):,.2f} GBP" for p in expected["price"]]
        )
        screenshot(page, "prices")
        page.get_by_role("link", name="Sync health").click()
        row = page.locator('tr[data-job="customer_sync_job"]')
        expect(row).to_contain_text("on time")
        expect(row).to_contain_text("succeeded")
        screenshot(page, "sync-health")
