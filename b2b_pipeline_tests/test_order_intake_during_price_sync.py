"""Orders first: an order never waits behind a master-data sync (issue 9).

A large price sync runs headless in a process of its own, as ``b2b-pipeline run`` or a
scheduled run would, against the same simulator, SQLite ERP and DuckDB audit file: every price
of the demo ERP changed but the one the buyer orders, and the sync's client paced at 2 requests
a second (a portal allowance the merchant might well have), so it talks to the portal for about
twenty seconds. While it does, a buyer places an order and the order intake job runs: the order
must be in the ERP while the sync is still running (no slot, lock or queue held by the sync
stands in its way), and the sync must then finish and succeed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from b2b_pipeline.connectors.sparklayer.purchases import purchase_id as pid
from b2b_pipeline_tests.harness import Pipeline, save_synced_portal, simulator_from

BRAKE = "BRK-0001"  # the SKU the buyer orders: its price is left as the portal shows it
# The sync's pacing: about 40 portal calls for the demo ERP's price lists, so ~20 s of calls.
SYNC_REQUESTS_PER_SECOND = "2"
PRICE_SYNC = """
import json
from b2b_pipeline.cli.runner import run_job

config = {"ops": {"portal_price_lists": {"config": {"full_comparison": True}}}}
summary = run_job("price_sync_job", config)
print(json.dumps({"success": summary.success, "error": summary.error, "assets": summary.assets}))
"""
PORTAL_PRICING = "/api/v1/price-lists/{slug}/pricing"


@pytest.fixture(scope="module")
def synced_portal_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_synced_portal(tmp_path_factory.mktemp("synced_portal"))


@pytest.fixture
def simulator(synced_portal_state: Path, tmp_path: Path):
    with simulator_from(synced_portal_state, tmp_path) as server:
        yield server


@pytest.fixture(autouse=True)
def _no_dagster_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)


def reprice_everything_but(pipeline: Pipeline, sku: str) -> tuple[str, str, int, float]:
    """Every ERP price up 3% except ``sku``'s; returns one changed break (list, sku, qty, price)."""
    items = pipeline.erp.read_price_list_items()
    changed = items[items["sku"] != sku].copy()
    changed["unit_price"] = (changed["unit_price"].astype(float) * 1.03).round(2)
    pipeline.erp.upsert_price_list_items(changed)
    row = changed.iloc[0]
    return (
        str(row["price_list_code"]),
        str(row["sku"]),
        int(row["min_quantity"]),
        float(row["unit_price"]),
    )


def pricing_reads(pipeline: Pipeline) -> int:
    by_endpoint = pipeline.calls().get("by_endpoint", {})
    return int(by_endpoint.get(f"GET {PORTAL_PRICING}", 0))


def portal_price(pipeline: Pipeline, slug: str, sku: str, quantity: int) -> float | None:
    """The price the portal holds for ``sku`` from ``quantity`` units on list ``slug``."""
    breaks = {
        int(level["quantity"]): float(level["price"])
        for item in pipeline.portal.iter_pricing(slug)
        if item["sku"] == sku
        for level in item["pricing"]
    }
    return breaks.get(quantity)


@pytest.mark.slow
def test_an_order_placed_while_a_large_price_sync_runs_reaches_the_erp_before_the_sync_ends(
    pipeline: Pipeline,
):
    changed = reprice_everything_but(pipeline, BRAKE)
    pipeline.reset_calls()
    sync = subprocess.Popen(
        [sys.executable, "-c", PRICE_SYNC],
        env={**os.environ, "SPARKLAYER_REQUESTS_PER_SECOND": SYNC_REQUESTS_PER_SECOND},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The sync is under way once it reads the portal's prices back (its full comparison).
        deadline = time.monotonic() + 120
        while pricing_reads(pipeline) == 0:
            assert sync.poll() is None, sync.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "the price sync never reached the portal"
            time.sleep(0.2)

        order = pipeline.order("CUST0001", [{"sku": BRAKE, "quantity": 2}])
        placed = time.monotonic()
        result = pipeline.run("order_intake_job")
        posted_after = time.monotonic() - placed

        assert result.success
        orders = pipeline.sales_orders()
        assert orders.loc[orders["external_ref"] == pid(order), "status"].tolist() == [
            "TO_BE_INVOICED"
        ]
        assert sync.poll() is None, (
            f"the price sync ended before the order was posted ({posted_after:.1f} s after it "
            "was placed): it must run longer for this test to prove anything"
        )
        out, err = sync.communicate(timeout=300)
    finally:
        if sync.poll() is None:
            sync.kill()
            sync.communicate()

    assert sync.returncode == 0, err[-2000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["success"] is True, summary["error"]
    assert summary["assets"]["portal_price_lists"]["skus_repriced"] > 0
    slug, sku, quantity, price = changed
    assert portal_price(pipeline, slug, sku, quantity) == pytest.approx(price)
