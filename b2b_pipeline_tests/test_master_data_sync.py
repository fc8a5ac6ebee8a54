"""Master data, ERP → portal, end to end: customers, groups, credit status, price lists and
stock, on the real simulator over HTTP, a seeded SQLite ERP and the project's own Dagster jobs.

Each test plays an operator: change something in the ERP (or, for drift, in the portal), run
the job the schedule or sensor would run, then read the portal back and compare it with the
ERP, count the API calls in the simulator's call log, and look at the exception queue, the
audit trail and the portal's sync log.
"""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from b2b_pipeline.connectors.erp.errors import ErpRejectedError
from b2b_pipeline.demo.erp_seed import NOTABLE_ACCOUNTS

TRADE = NOTABLE_ACCOUNTS["trade"]  # CUST0001, PL-TRADE-GBP
RETAIL = NOTABLE_ACCOUNTS["retail"]  # CUST0002
EXPORT = NOTABLE_ACCOUNTS["export_reverse_charge"]  # CUST0004, EUR, reverse charge
OWN_LIST = NOTABLE_ACCOUNTS["customer_prices"]  # CUST0005, PL-C-CUST0005 over PL-TRADE-GBP
HELD = NOTABLE_ACCOUNTS["credit_hold"]  # CUST0006
INACTIVE = NOTABLE_ACCOUNTS["inactive"]  # CUST0007
EXEMPT = NOTABLE_ACCOUNTS["tax_exempt"]  # CUST0008
DISCOUNT = NOTABLE_ACCOUNTS["discount"]  # CUST0010, 5 %
SKU = "BRK-0001"
FULL_COMPARISON = {"ops": {"portal_price_lists": {"config": {"full_comparison": True}}}}
SYNC_JOBS = ("price_sync_job", "customer_sync_job", "inventory_sync_job")
# Portal write methods; the token request and the sync-health report are not master data.
WRITE_METHODS = {"PUT", "POST", "PATCH", "DELETE"}
NOT_MASTER_DATA = {
    "/api/auth/token",
    "/api/v1/sync-log/{integration}/{data_type}",
    "/api/v1/batch-fetch-stock",  # a read sent as POST
}
PRICING_ENDPOINT = "/api/v1/price-lists/{slug}/pricing"
CUSTOMER_ENDPOINT = "/api/v2/customers/{lookupBy}/{identifier}"


# --- helpers: run, read back, count ------------------------------------------------------


def sync_master_data(pipeline) -> dict[str, dg.ExecuteInProcessResult]:
    """The three scheduled syncs, prices first so customers are pointed at filled lists."""
    return {job: pipeline.run(job) for job in SYNC_JOBS}


def master_data_writes(pipeline) -> list[dict]:
    """Every call since the last reset that wrote master data to the portal."""
    return [
        call
        for call in pipeline.calls()["log"]
        if call["method"] in WRITE_METHODS
        and call["path"].startswith("/api/")
        and call["endpoint"] not in NOT_MASTER_DATA
    ]


def portal_customers(pipeline) -> dict[str, dict]:
    return {c["accounting_id"]: c for c in pipeline.portal.iter_customers()}


def portal_breaks(pipeline, slug: str) -> dict[str, list[tuple[int, float]]]:
    return {
        item["sku"]: [(b["quantity"], round(b["price"], 4)) for b in item["pricing"]]
        for item in pipeline.portal.iter_pricing(slug)
    }


def erp_breaks(pipeline, slug: str) -> dict[str, list[tuple[int, float]]]:
    items = pipeline.erp.read_price_list_items()
    items = items[items["price_list_code"] == slug].sort_values(["sku", "min_quantity"])
    breaks: dict[str, list[tuple[int, float]]] = {}
    for sku, quantity, price in zip(
        items["sku"], items["min_quantity"], items["unit_price"], strict=True
    ):
        breaks.setdefault(sku, []).append((int(quantity), round(float(price), 4)))
    return breaks


def effective_breaks(pipeline, slug: str) -> dict[str, list[tuple[int, float]]]:
    """What the portal must hold for a list: the ERP's breaks for a group list; for a
    customer-specific list, its effective breaks (the ERP's answer at every break of it and its
    group list, for the SKUs it prices)."""
    from b2b_pipeline.domain.price_lists import effective_price_list_items

    items = effective_price_list_items(
        pipeline.erp.read_price_list_items(), pipeline.erp.read_price_lists()
    )
    items = items[items["price_list_code"] == slug].sort_values(["sku", "min_quantity"])
    breaks: dict[str, list[tuple[int, float]]] = {}
    for sku, quantity, price in zip(
        items["sku"], items["min_quantity"], items["unit_price"], strict=True
    ):
        breaks.setdefault(sku, []).append((int(quantity), round(float(price), 4)))
    return breaks


def audit_actions(pipeline, account: str) -> list[str]:
    events = pipeline.audit.query(
        "SELECT action FROM audit_events WHERE entity = 'customer' AND entity_key = $key "
        "ORDER BY seq",
        {"key": account},
    )
    return events["action"].tolist()


def assert_portal_equals_erp(pipeline) -> None:
    """Every account, every list's breaks and every stock level in the portal is the ERP's."""
    erp_customers = pipeline.erp.read_customers().set_index("account_code")
    customers = portal_customers(pipeline)
    assert sorted(customers) == sorted(erp_customers.index)
    for code, erp in erp_customers.iterrows():
        portal = customers[code]
        assert portal["external_id"] == code
        assert portal["company_name"] == erp["name"]
        held = bool(erp["credit_hold"]) or not bool(erp["active"])
        assert portal["group"] == ("on-hold" if held else erp["customer_group"]), code
        limit = 0.0 if held else float(erp["credit_limit"])
        assert portal["payment_on_account"]["credit_limit"] == limit, code
        assert portal["tax_exempt"] is (erp["tax_code"] in ("EXEMPT", "REVERSE_CHARGE")), code
        assert portal["discount_percentage"] == pytest.approx(float(erp["discount_percentage"]))
        assert portal["price_lists"][0] == erp["price_list_code"], code
    for slug in pipeline.erp.read_price_lists()["code"]:
        assert portal_breaks(pipeline, slug) == effective_breaks(pipeline, slug), slug
    assert portal_stock(pipeline) == erp_available_stock(pipeline)


def erp_available_stock(pipeline) -> dict[tuple[str, str], int]:
    locations = {"MAIN": "default", "NORTH": "north"}  # the shipped mapping file
    stock = pipeline.erp.read_inventory()
    return {
        (sku, locations[warehouse]): int(on_hand - allocated)
        for sku, warehouse, on_hand, allocated in zip(
            stock["sku"], stock["warehouse_code"], stock["on_hand"], stock["allocated"], strict=True
        )
    }


def portal_stock(pipeline) -> dict[tuple[str, str], int]:
    skus = sorted(pipeline.erp.read_products()["sku"])
    return {
        (row["sku"], row["stock_location_external_id"]): row["stock_level"]
        for row in pipeline.portal.batch_fetch_stock(skus)
    }


# --- the first sync, a sync with nothing to do, a few changed records ----------------------


@pytest.mark.slow
def test_first_sync_mirrors_the_erp_and_later_syncs_send_only_what_changed(pipeline):
    started = datetime.now(UTC)
    results = sync_master_data(pipeline)

    assert_portal_equals_erp(pipeline)
    customers = portal_customers(pipeline)
    # The notable accounts, as a person checking the portal would look at them.
    assert customers[TRADE]["group"] == "trade"
    assert customers[RETAIL]["group"] == "retail"
    assert customers[HELD]["group"] == "on-hold"
    assert customers[HELD]["payment_on_account"]["credit_limit"] == 0
    assert customers[INACTIVE]["group"] == "on-hold"
    assert customers[EXEMPT]["tax_exempt"] is True
    assert customers[EXPORT]["tax_exempt"] is True  # reverse charge
    assert customers[TRADE]["tax_exempt"] is False
    assert customers[OWN_LIST]["price_lists"] == ["PL-C-CUST0005", "PL-TRADE-GBP"]
    assert customers[DISCOUNT]["discount_percentage"] == 5.0
    groups = {g["slug"]: g for g in pipeline.portal.list_customer_groups()}
    assert groups["on-hold"]["ordering_enabled"] is False
    assert "on_account" not in groups["on-hold"]["payment_methods"]
    # Quantity breaks arrive as breaks: 1/10/50/100 with falling prices.
    trade_brk = portal_breaks(pipeline, "PL-TRADE-GBP")[SKU]
    assert [q for q, _ in trade_brk] == [1, 10, 50, 100]
    assert [p for _, p in trade_brk] == sorted((p for _, p in trade_brk), reverse=True)
    lists = {pl["slug"]: pl for pl in pipeline.portal.iter_price_lists()}
    assert lists["PL-EXPORT-EUR"]["currency_code"] == "EUR"
    stock = portal_stock(pipeline)
    assert stock[(SKU, "default")] == 61 - 10  # on hand − allocated in MAIN

    # Every asset check passes after a clean sync.
    checks = {
        name: ok for result in results.values() for name, ok in pipeline.checks(result).items()
    }
    assert checks and all(checks.values()), checks
    assert pipeline.audit.exceptions(status="open").empty

    # The portal shows each sync's health in its sync log.
    for data_type in ("customers", "pricing", "inventory"):
        log = pipeline.portal.get_sync_log("b2b-pipeline", data_type)
        assert log["last_full_sync_succeeded"] is True, data_type
        assert log["errors"] == [], data_type
        assert datetime.fromisoformat(log["last_full_sync"]) >= started.replace(microsecond=0)

    # Nothing changed in the ERP: the rerun reads, and writes no master data at all.
    pipeline.reset_calls()
    rerun = sync_master_data(pipeline)
    assert master_data_writes(pipeline) == []
    # What it does write: one sync-health report per flow (and token requests).
    by_endpoint = pipeline.calls()["by_endpoint"]
    # (the price sync also brings customers up to date with any list it filled: 4 reports.)
    assert by_endpoint["PUT /api/v1/sync-log/{integration}/{data_type}"] == 4
    assert pipeline.metadata(rerun["customer_sync_job"], "portal_customers")["unchanged"] == 40
    assert pipeline.metadata(rerun["price_sync_job"], "portal_price_lists")["skus_changed"] == 0
    assert pipeline.metadata(rerun["inventory_sync_job"], "portal_stock_levels")["changed"] == 0

    # A new account, an account moved to another group and one stock movement: the next
    # syncs send exactly those three records.
    new_account = (
        pipeline.erp.read_customers()
        .iloc[[0]]
        .assign(
            account_code="CUST0900",
            name="Wessex Timber Merchants Ltd",
            email="orders@wessex-timber.example",
            credit_limit=7500,
        )
    )
    pipeline.erp.upsert_customers(new_account.drop(columns=["updated_at"]))
    pipeline.erp.set_customer_group(RETAIL, "wholesale", "PL-WHOLESALE-GBP")
    pipeline.erp.set_stock(SKU, "NORTH", on_hand=40, allocated=15)
    pipeline.reset_calls()

    customers_run = pipeline.run("customer_sync_job")
    stock_run = pipeline.run("inventory_sync_job")

    writes = master_data_writes(pipeline)
    # One PUT per changed account (an existing account is addressed by its portal id).
    assert len([w for w in writes if w["endpoint"] == CUSTOMER_ENDPOINT]) == 2
    stock_writes = [w for w in writes if w["endpoint"] == "/api/v1/batch-update-stock"]
    assert [w["items"] for w in stock_writes] == [1]
    assert len(writes) == 3

    customers = portal_customers(pipeline)
    assert customers["CUST0900"]["company_name"] == "Wessex Timber Merchants Ltd"
    assert customers["CUST0900"]["group"] == "trade"
    assert customers["CUST0900"]["payment_on_account"]["credit_limit"] == 7500
    assert customers[RETAIL]["group"] == "wholesale"
    assert customers[RETAIL]["price_lists"] == ["PL-WHOLESALE-GBP"]
    assert portal_stock(pipeline)[(SKU, "north")] == 25
    meta = pipeline.metadata(customers_run, "portal_customers")
    assert (meta["created"], meta["updated"]) == (1, 1)
    assert pipeline.metadata(stock_run, "portal_stock_levels")["pushed"] == 1
    assert audit_actions(pipeline, "CUST0900") == ["created"]
    assert audit_actions(pipeline, RETAIL) == ["created", "pushed"]


# --- incremental changes -------------------------------------------------------------------


@pytest.mark.slow
def test_price_changes_send_only_the_changed_sku_and_history_answers_what_was_seen(pipeline):
    pipeline.run("price_sync_job")
    pipeline.run("customer_sync_job")
    before_change = datetime.now(UTC)
    old_price = erp_breaks(pipeline, "PL-TRADE-GBP")[SKU][0][1]

    # One price changes in the ERP: one pricing call, holding that one SKU.
    pipeline.erp.set_price("PL-TRADE-GBP", SKU, 1, "11.49")
    pipeline.reset_calls()
    pipeline.run("price_sync_job")
    writes = master_data_writes(pipeline)
    assert [(w["method"], w["endpoint"], w["items"]) for w in writes] == [
        ("PATCH", PRICING_ENDPOINT, 1)
    ]
    assert writes[0]["path"] == "/api/v1/price-lists/PL-TRADE-GBP/pricing"
    assert portal_breaks(pipeline, "PL-TRADE-GBP")[SKU][0] == (1, 11.49)
    after_change = datetime.now(UTC)

    # In one run: a quantity break added on the trade list; on CUST0005's own list a price
    # changes and a SKU is removed. One call per list, holding just the SKUs that changed:
    # CUST0005's list also prices BRK-0001, so its copy gains the trade list's new break.
    pipeline.erp.set_price("PL-TRADE-GBP", SKU, 250, "8.25")
    pipeline.erp.set_price("PL-C-CUST0005", "WID-0001", 1, "27.10")
    assert pipeline.erp.delete_price("PL-C-CUST0005", "FIX-0001") == 4
    pipeline.reset_calls()
    result = pipeline.run("price_sync_job")
    writes = master_data_writes(pipeline)
    assert sorted((w["method"], w["path"], w["items"]) for w in writes) == [
        ("PATCH", "/api/v1/price-lists/PL-C-CUST0005/pricing", 3),
        ("PATCH", "/api/v1/price-lists/PL-TRADE-GBP/pricing", 1),
    ]
    assert [q for q, _ in portal_breaks(pipeline, "PL-TRADE-GBP")[SKU]] == [1, 10, 50, 100, 250]
    own = portal_breaks(pipeline, "PL-C-CUST0005")
    # The ERP charges the lowest break reached: from 10 up, its own 27.34 loses to 27.10.
    assert own["WID-0001"] == [(1, 27.10), (10, 27.10), (50, 25.90), (100, 24.46)]
    # At 250 the trade list's new 8.25 does not beat CUST0005's own 8.13 from 100.
    assert own[SKU][-2:] == [(100, 8.13), (250, 8.13)]
    assert "FIX-0001" not in own  # the buyer now gets FIX-0001 from the parent trade list
    assert own == effective_breaks(pipeline, "PL-C-CUST0005")
    meta = pipeline.metadata(result, "portal_price_lists")
    assert (meta["skus_repriced"], meta["skus_removed"]) == (3, 1)
    assert all(pipeline.checks(result).values())
    # ...and the history says so: from now on CUST0005 sees FIX-0001 from the trade list only.
    fix_now = pipeline.audit.price_on(OWN_LIST, "FIX-0001", datetime.now(UTC))
    assert set(fix_now["price_list_slug"]) == {"PL-TRADE-GBP"}

    # Price history answers "what did CUST0001 see for BRK-0001, single units, and when".
    def unit_price_at(moment: datetime) -> float:
        seen = pipeline.audit.price_on(TRADE, SKU, moment)
        return float(seen.loc[seen["min_quantity"] == 1, "price"].iloc[0])

    assert unit_price_at(before_change) == old_price
    assert unit_price_at(after_change) == 11.49
    today = pipeline.audit.price_on(TRADE, SKU, datetime.now(UTC).date())
    assert sorted(today.loc[today["min_quantity"] == 1, "price"].astype(float)) == sorted(
        [old_price, 11.49]
    )
    # The 5 % discount account sees the same list less its discount.
    discounted = pipeline.audit.price_on(DISCOUNT, SKU, datetime.now(UTC))
    assert float(discounted.loc[discounted["min_quantity"] == 1, "price"].iloc[0]) == 10.92


# --- credit hold and release --------------------------------------------------------------


@pytest.mark.slow
def test_credit_hold_and_release_stop_and_restart_a_buyers_orders(pipeline):
    defs = pipeline.definitions()
    sensor = defs.resolve_sensor_def("erp_customer_changes_sensor")

    def evaluate(cursor: str | None):
        """One tick of the sensor as the daemon runs it, against this test's ERP."""
        with dg.build_sensor_context(
            cursor=cursor, resources={"erp": defs.resources["erp"]}
        ) as context:
            return sensor.evaluate_tick(context)

    first = evaluate(None)
    assert len(first.run_requests) == 1
    cursor = first.cursor
    pipeline.run("price_sync_job")  # the buyer's prices, so the portal can price an order
    pipeline.run("customer_sync_job")
    assert evaluate(cursor).run_requests == []  # nothing changed: the sensor stays quiet
    line = [{"sku": SKU, "quantity": 2}]
    assert pipeline.place_order(TRADE, line).status_code == 201

    # Credit control puts the account on hold in the ERP.
    pipeline.erp.set_credit_hold(TRADE, True)
    tick = evaluate(cursor)
    assert len(tick.run_requests) == 1
    assert tick.run_requests[0].job_name in (None, "customer_sync_job")
    cursor = tick.cursor
    held_run = pipeline.run("customer_sync_job", tick.run_requests[0].run_config)
    assert pipeline.metadata(held_run, "portal_customers")["credit_holds_applied"] == 1
    customer = portal_customers(pipeline)[TRADE]
    assert (customer["group"], customer["payment_on_account"]["credit_limit"]) == ("on-hold", 0)
    refused = pipeline.place_order(TRADE, line, po_number="PO-HELD")
    assert refused.status_code == 403, refused.text

    # Released: the next tick syncs again and the buyer can order.
    pipeline.erp.set_credit_hold(TRADE, False)
    tick = evaluate(cursor)
    assert len(tick.run_requests) == 1
    released_run = pipeline.run("customer_sync_job", tick.run_requests[0].run_config)
    assert pipeline.metadata(released_run, "portal_customers")["credit_holds_released"] == 1
    customer = portal_customers(pipeline)[TRADE]
    assert (customer["group"], customer["payment_on_account"]["credit_limit"]) == ("trade", 15000)
    assert pipeline.place_order(TRADE, line, po_number="PO-RELEASED").status_code == 201

    actions = audit_actions(pipeline, TRADE)
    assert actions.index("credit_hold_applied") < actions.index("credit_hold_released")
    holds = pipeline.audit.query(
        "SELECT category FROM audit_events WHERE entity_key = $key AND action LIKE 'credit_hold%'",
        {"key": TRADE},
    )
    assert set(holds["category"]) == {"AUTHORISATION"}


# --- drift -------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_price_edited_in_the_portal_is_repaired_nightly_not_by_the_incremental_run(pipeline):
    pipeline.run("price_sync_job")
    erp_price = erp_breaks(pipeline, "PL-TRADE-GBP")[SKU]
    # Someone edits a price by hand in the portal.
    pipeline.portal.patch_pricing(
        "PL-TRADE-GBP", [{"sku": SKU, "pricing": [{"quantity": 1, "price": 1.00}]}]
    )

    pipeline.reset_calls()
    incremental = pipeline.run("price_sync_job")
    assert master_data_writes(pipeline) == []  # trusts its snapshot: nothing to send
    assert portal_breaks(pipeline, "PL-TRADE-GBP")[SKU] == [(1, 1.0)]
    # ...but the check after it reads the portal back and sees the drift.
    assert pipeline.checks(incremental)["portal_prices_match_erp"] is False

    pipeline.reset_calls()
    nightly = pipeline.run("price_sync_job", FULL_COMPARISON)
    writes = master_data_writes(pipeline)
    assert [(w["path"], w["items"]) for w in writes] == [
        ("/api/v1/price-lists/PL-TRADE-GBP/pricing", 1)
    ]
    assert portal_breaks(pipeline, "PL-TRADE-GBP")[SKU] == erp_price
    assert pipeline.checks(nightly)["portal_prices_match_erp"] is True


# --- faults -------------------------------------------------------------------------------


def test_rate_limits_and_server_errors_still_deliver_every_record_exactly_once(pipeline):
    pipeline.faults(requests_per_second=20, burst=10, error_rate=0.03, seed=11)
    sync_master_data(pipeline)
    log = pipeline.calls()["log"]
    pipeline.faults()  # reading back is not under test

    statuses = {call["status"] for call in log}
    assert 429 in statuses, "the portal's rate limit was never reached"
    assert statuses & {500, 502, 503}, "no server error was injected"
    assert_portal_equals_erp(pipeline)

    applied = [c for c in log if c["status"] < 300]
    customer_puts = [c["path"] for c in applied if c["endpoint"] == CUSTOMER_ENDPOINT]
    assert len(customer_puts) == len(set(customer_puts)) == 40
    priced = sum(
        c["items"] for c in applied if c["method"] == "PATCH" and c["endpoint"] == PRICING_ENDPOINT
    )
    assert priced == len(pipeline.erp.read_price_list_items().groupby(["price_list_code", "sku"]))
    stocked = sum(c["items"] for c in applied if c["endpoint"] == "/api/v1/batch-update-stock")
    assert stocked == len(pipeline.erp.read_inventory())
    assert pipeline.audit.exceptions(status="open").empty


# --- refusals and bad ERP rows --------------------------------------------------------------


@pytest.mark.slow
def test_a_price_the_portal_refuses_is_queued_and_the_rest_of_the_list_applied(pipeline):
    # The ERP accepts SKU codes longer than the portal's 64 characters (SQLite does not enforce
    # VARCHAR lengths; many ERPs allow longer codes): a real way for one row to be refused.
    long_sku = "CUSTOM-JOINERY-BRACKET-" + "X" * 50
    pipeline.erp.upsert_products(
        pd.DataFrame([{"sku": long_sku, "name": "Bespoke joinery bracket", "active": True}])
    )
    pipeline.erp.set_price("PL-C-CUST0005", long_sku, 1, "4.20")
    pipeline.erp.set_price("PL-C-CUST0005", "WID-0001", 1, "26.50")

    result = pipeline.run("price_sync_job")

    own = portal_breaks(pipeline, "PL-C-CUST0005")
    assert own["WID-0001"][0] == (1, 26.5)  # the good rows of the same batch arrived
    assert long_sku not in own
    assert len(own) == 8
    meta = pipeline.metadata(result, "portal_price_lists")
    assert meta["skus_refused_by_portal"] == 1
    queued = pipeline.audit.exceptions(status="open", category="PRICING")
    assert len(queued) == 1
    exception = queued.iloc[0]
    assert exception["reason_code"] == "PORTAL_REJECTED_ROW"
    assert exception["account_code"] == OWN_LIST
    for named in ("PL-C-CUST0005", long_sku, "Thames Valley Joinery Ltd", OWN_LIST):
        assert named in exception["message"]
    log = pipeline.portal.get_sync_log("b2b-pipeline", "pricing")
    assert log["last_full_sync_succeeded"] is False
    assert len(log["errors"]) == 1 and long_sku in log["errors"][0]["message"]

    # The next sync tries the refused row again (and only it), and queues no duplicate.
    pipeline.reset_calls()
    pipeline.run("price_sync_job")
    assert [w["items"] for w in master_data_writes(pipeline)] == [1]
    assert len(pipeline.audit.exceptions(status="open", category="PRICING")) == 1

    # Once the ERP stops pricing that code, the portal has nothing left to refuse: the queue
    # clears by itself, and says who closed it.
    pipeline.erp.delete_price("PL-C-CUST0005", long_sku)
    pipeline.run("price_sync_job")
    assert pipeline.audit.exceptions(status="open", category="PRICING").empty
    closed = pipeline.audit.exception(exception["exception_id"])
    assert (closed["status"], closed["resolved_by"]) == ("resolved", "pipeline")


def test_bad_erp_rows_are_queued_in_plain_words_and_the_rest_still_syncs(pipeline):
    pipeline.run("price_sync_job")  # the portal holds the good prices before the ERP goes wrong
    # The reference ERP refuses a negative price at source.
    with pytest.raises(ErpRejectedError, match="ck_erp_price_list_items_unit_price"):
        pipeline.erp.set_price("PL-TRADE-GBP", SKU, 1, "-1.00")
    # What does get into an ERP: a padded SKU that duplicates a break once trimmed, stock on
    # hand below zero, and a customer with a tax code the mapping file does not know.
    padded = pd.DataFrame(
        [{"price_list_code": "PL-TRADE-GBP", "sku": SKU + " ", "min_quantity": 1, "unit_price": 99}]
    )
    pipeline.erp.upsert_price_list_items(padded)
    erp_db = sa.create_engine(f"sqlite:///{pipeline.data_dir / 'erp.sqlite'}")
    with erp_db.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO erp_tax_codes (code, description, rate) "
                "VALUES ('OUTSIDE_SCOPE', 'Outside the scope of VAT', 0)"
            )
        )
    erp_db.dispose()
    pipeline.erp.set_stock("WID-0001", "MAIN", on_hand=-5, allocated=0)
    bad_customer = (
        pipeline.erp.read_customers()
        .iloc[[1]]
        .assign(account_code="CUST0901", name="Dockside Supplies Ltd", tax_code="OUTSIDE_SCOPE")
    )
    pipeline.erp.upsert_customers(bad_customer.drop(columns=["updated_at"]))
    # ...and good changes in the same runs.
    pipeline.erp.set_price("PL-TRADE-GBP", "WID-0001", 1, "30.00")
    pipeline.erp.set_stock("FIX-0001", "MAIN", on_hand=500, allocated=0)
    pipeline.erp.set_customer_group(RETAIL, "trade", "PL-TRADE-GBP")
    trade_brk_before = portal_breaks(pipeline, "PL-TRADE-GBP")[SKU]

    results = sync_master_data(pipeline)

    queue = pipeline.audit.exceptions(status="open")
    by_key = {
        key: row for key, row in zip(queue["entity_key"], queue.to_dict("records"), strict=True)
    }
    duplicates = [r for k, r in by_key.items() if k.startswith(f"PL-TRADE-GBP/{SKU}")]
    assert duplicates and all("more than one" in r["message"] for r in duplicates)
    stock = by_key["WID-0001@MAIN"]
    assert "negative" in stock["message"] and "-5" in stock["message"]
    customer = by_key["CUST0901"]
    assert customer["category"] == "MAPPING" and "OUTSIDE_SCOPE" in customer["message"]
    for message in queue["message"]:  # written for a person: no tracebacks or class names
        assert "Traceback" not in message and "Error" not in message and "\n" not in message

    # The rest arrived, and the broken SKU kept its last good prices on that list.
    assert portal_breaks(pipeline, "PL-TRADE-GBP")["WID-0001"][0] == (1, 30.0)
    assert portal_breaks(pipeline, "PL-TRADE-GBP")[SKU] == trade_brk_before
    assert portal_stock(pipeline)[("FIX-0001", "default")] == 500
    assert portal_customers(pipeline)[RETAIL]["group"] == "trade"
    assert "CUST0901" not in portal_customers(pipeline)
    for job, result in results.items():
        assert result.success, job
    # The merchant sees the held-back account in the portal's sync log too.
    log = pipeline.portal.get_sync_log("b2b-pipeline", "customers")
    assert log["last_full_sync_succeeded"] is False
    assert [e["external_id"] for e in log["errors"]] == ["CUST0901"]


# --- stock freshness ----------------------------------------------------------------------


def test_portal_stock_goes_stale_when_the_stock_sync_stops_and_is_fresh_right_after_one(
    pipeline,
):
    """The freshness policy on ``portal_stock_levels``, evaluated by the evaluator Dagster's
    freshness daemon runs (every 30 s under ``dagster dev``), against the runs of the stock job
    recorded in one Dagster instance, at moments after the last sync (Dagster's clock frozen
    there, as Dagster's own tests of freshness do)."""
    import asyncio
    from datetime import timedelta

    from dagster._core.definitions.freshness import FreshnessState
    from dagster._core.definitions.freshness_evaluator import (
        FRESHNESS_EVALUATORS_BY_POLICY_TYPE,
    )
    from dagster._core.loader import LoadingContextForTest
    from dagster._core.test_utils import freeze_time

    defs = pipeline.definitions()
    node = defs.resolve_asset_graph().get(dg.AssetKey("portal_stock_levels"))
    policy = node.freshness_policy
    evaluator = FRESHNESS_EVALUATORS_BY_POLICY_TYPE[type(policy)]()
    # Measured against the stock schedule: failing after two missed quarter-hours.
    schedule = defs.resolve_schedule_def("inventory_sync_schedule")
    assert schedule.cron_schedule == "*/15 * * * *"
    assert policy.fail_window.to_timedelta() == timedelta(minutes=30)
    instance = dg.DagsterInstance.ephemeral()
    job = defs.resolve_job_def("inventory_sync_job")

    def freshness(at: datetime) -> FreshnessState:
        with freeze_time(at):
            context = LoadingContextForTest(instance)
            return asyncio.run(evaluator.evaluate_freshness(context=context, node=node))

    # Before any stock sync Dagster cannot call the stock fresh.
    assert freshness(datetime.now(UTC)) == FreshnessState.UNKNOWN
    assert job.execute_in_process(instance=instance).success
    synced = datetime.now(UTC)
    assert freshness(synced + timedelta(minutes=1)) == FreshnessState.PASS
    # One run late: a warning; two schedule intervals without a sync: stale.
    assert freshness(synced + timedelta(minutes=21)) == FreshnessState.WARN
    stale_at = synced + timedelta(minutes=31)
    assert freshness(stale_at) == FreshnessState.FAIL

    # The next stock sync (run at that later moment) makes it fresh again at once.
    with freeze_time(stale_at):
        assert job.execute_in_process(instance=instance).success
    assert freshness(stale_at + timedelta(seconds=5)) == FreshnessState.PASS
