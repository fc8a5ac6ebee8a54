"""The stock sync as a flow, without Dagster: the real simulator over HTTP, a seeded SQLite ERP
and a DuckDB audit file, handed to the flow as its ports.

What a merchant relies on: the portal shows on hand less allocated per SKU and location; a sync
with nothing changed writes nothing; a movement sends exactly that level; a level the portal
refuses is queued in plain words while the rest of the batch lands, and is sent again (and only
it) until the ERP is corrected, when the queue clears by itself.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import pytest
import requests
import sqlalchemy as sa

from b2b_pipeline.config.mappings import load_mappings
from b2b_pipeline.connectors.sync_state import SyncState
from b2b_pipeline.demo import seed_erp
from b2b_pipeline.flows.stock_sync import StockSync, run_stock_sync

SKU = "BRK-0001"  # 61 on hand, 10 allocated in MAIN in the seed
STOCK_ENDPOINT = "POST /api/v1/batch-update-stock"
LOCATIONS = {"MAIN": "default", "NORTH": "north"}  # the shipped mapping file


@pytest.fixture
def sync(simulator, portal, erp, audit):
    seed_erp(erp)
    state = SyncState(audit.path)
    mappings = load_mappings(None)

    def run() -> StockSync:
        return run_stock_sync(
            portal=portal,
            erp=erp,
            audit=audit,
            state=state,
            mappings=mappings,
            run_id=f"test-{uuid.uuid4().hex[:8]}",
        )

    return run


def portal_stock(portal, erp) -> dict[tuple[str, str], int]:
    skus = sorted(erp.read_products()["sku"])
    return {
        (row["sku"], row["stock_location_external_id"]): row["stock_level"]
        for row in portal.batch_fetch_stock(skus)
    }


def erp_available(erp) -> dict[tuple[str, str], int]:
    stock = erp.read_inventory()
    return {
        (sku, LOCATIONS[warehouse]): max(int(on_hand - allocated), 0)
        for sku, warehouse, on_hand, allocated in zip(
            stock["sku"], stock["warehouse_code"], stock["on_hand"], stock["allocated"], strict=True
        )
    }


def stock_writes(simulator) -> list[int]:
    """Rows per stock write the portal applied since the last reset."""
    log = requests.get(f"{simulator.url}/_sim/calls", timeout=10).json()["log"]
    return [
        c["items"]
        for c in log
        if f"{c['method']} {c['endpoint']}" == STOCK_ENDPOINT and c["status"] < 300
    ]


def reset_calls(simulator) -> None:
    requests.delete(f"{simulator.url}/_sim/calls", timeout=10).raise_for_status()


def test_the_portal_shows_available_stock_and_only_changed_levels_are_sent(
    sync, simulator, portal, erp, audit
) -> None:
    first = sync()
    assert first.stock.locations_created == ["north"]  # "default" exists on every portal
    assert portal_stock(portal, erp) == erp_available(erp)
    assert portal_stock(portal, erp)[(SKU, "default")] == 61 - 10
    assert first.stock.pushed == first.stock.levels == len(erp.read_inventory())
    log = portal.get_sync_log("b2b-pipeline", "inventory")
    assert log["last_full_sync_succeeded"] is True

    reset_calls(simulator)
    quiet = sync()
    assert (quiet.stock.changed, quiet.stock.unchanged) == (0, quiet.stock.levels)
    assert stock_writes(simulator) == []

    erp.set_stock(SKU, "NORTH", on_hand=40, allocated=15)
    erp.set_stock("WID-0001", "MAIN", on_hand=3, allocated=9)  # over-allocated: shows 0
    reset_calls(simulator)
    moved = sync()
    assert moved.stock.pushed == 2 and stock_writes(simulator) == [2]
    stock = portal_stock(portal, erp)
    assert (stock[(SKU, "north")], stock[("WID-0001", "default")]) == (25, 0)
    pushed = audit.events(entity="inventory", action="pushed")
    assert f"{SKU}@north" in set(pushed["entity_key"])


def test_a_level_the_portal_refuses_is_queued_and_the_rest_of_the_batch_lands(
    sync, simulator, portal, erp, audit, tmp_path: Path
) -> None:
    # The ERP takes SKU codes longer than the portal's 64 characters: one row is refused.
    long_sku = "CUSTOM-JOINERY-BRACKET-" + "X" * 50
    erp.upsert_products(
        pd.DataFrame([{"sku": long_sku, "name": "Bespoke joinery bracket", "active": True}])
    )
    erp.set_stock(long_sku, "MAIN", on_hand=7)

    result = sync()

    assert result.stock.refused_by_portal == 1
    assert result.stock.pushed == result.stock.changed - 1
    assert portal_stock(portal, erp)[(SKU, "default")] == 51  # the rest of the batch landed
    (exception,) = audit.exceptions(status="open").to_dict("records")
    assert (exception["reason_code"], exception["category"]) == ("PORTAL_REJECTED_RECORD", "DATA")
    assert exception["entity_key"] == f"{long_sku}@default"
    assert long_sku in exception["message"] and "\n" not in exception["message"]
    log = portal.get_sync_log("b2b-pipeline", "inventory")
    assert log["last_full_sync_succeeded"] is False
    # (a key past the sync log's limit is cut visibly; the message carries it whole)
    (error,) = log["errors"]
    assert f"{long_sku}@default" in error["message"]

    # The next sync sends the refused level again, and only it; no second exception.
    reset_calls(simulator)
    again = sync()
    assert (again.stock.changed, again.stock.refused_by_portal) == (1, 1)
    assert len(audit.exceptions(status="open")) == 1

    # The ERP stops stocking that code (its stock row is deleted): nothing is left for the
    # portal to refuse, and the queue clears by itself.
    database = sa.create_engine(f"sqlite:///{tmp_path / 'erp.sqlite'}")
    with database.begin() as connection:
        connection.execute(sa.text("DELETE FROM erp_inventory WHERE sku = :sku"), {"sku": long_sku})
    database.dispose()
    cleared = sync()
    assert (cleared.stock.changed, cleared.stock.refused_by_portal) == (0, 0)
    assert audit.exceptions(status="open").empty
    closed = audit.exception(exception["exception_id"])
    assert (closed["status"], closed["resolved_by"]) == ("resolved", "pipeline")
