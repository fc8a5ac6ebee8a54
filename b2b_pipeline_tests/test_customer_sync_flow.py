"""The customer sync as a flow, without Dagster: the real simulator over HTTP, a seeded SQLite
ERP and a DuckDB audit file, handed to the flow as its ports.

Credit control's promise, as a buyer meets it: an account put on hold in the ERP is moved to
the on-hold group with a credit limit of 0 and can no longer order; released, it is back in its
group with its ERP credit limit and orders again. Each move is in the audit trail.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from b2b_pipeline.config.mappings import Mappings, load_mappings
from b2b_pipeline.connectors.audit.store import AuditStore
from b2b_pipeline.connectors.erp.gateway import ErpGateway
from b2b_pipeline.connectors.sparklayer.client import SparkLayerClient
from b2b_pipeline.connectors.sync_state import SyncState
from b2b_pipeline.demo import seed_erp
from b2b_pipeline.demo.erp_seed import NOTABLE_ACCOUNTS
from b2b_pipeline.flows.customer_sync import CustomerSync, run_customer_sync
from b2b_pipeline.flows.price_sync import run_price_sync

TRADE = NOTABLE_ACCOUNTS["trade"]  # CUST0001: trade group, credit limit 15,000
LINE = [{"sku": "BRK-0001", "quantity": 2}]


@dataclass
class Rig:
    url: str
    portal: SparkLayerClient
    erp: ErpGateway
    audit: AuditStore
    state: SyncState
    mappings: Mappings

    def sync_customers(self) -> CustomerSync:
        return run_customer_sync(
            portal=self.portal,
            erp=self.erp,
            audit=self.audit,
            state=self.state,
            mappings=self.mappings,
            run_id=f"test-{uuid.uuid4().hex[:8]}",
        )

    def place_order(self, customer: str, po: str) -> requests.Response:
        """A buyer places an order, Pay on Account, through the simulator's buyer endpoint."""
        return requests.post(
            f"{self.url}/_sim/orders",
            json={
                "customer": customer,
                "type": "order",
                "payment_method": "on_account",
                "customer_reference": po,
                "lines": LINE,
            },
            timeout=10,
        )


@pytest.fixture
def rig(simulator, portal, erp, audit) -> Rig:
    seed_erp(erp)
    return Rig(
        url=simulator.url,
        portal=portal,
        erp=erp,
        audit=audit,
        state=SyncState(audit.path),
        mappings=load_mappings(None),
    )


def test_a_credit_hold_moves_the_account_on_hold_and_the_release_restores_it(
    rig: Rig,
) -> None:
    run_price_sync(
        portal=rig.portal,
        erp=rig.erp,
        audit=rig.audit,
        state=rig.state,
        mappings=rig.mappings,
        run_id="test-prices",
    )
    first = rig.sync_customers()
    assert first.customers.created == first.customers.accounts == 40
    customer = rig.portal.get_customer(TRADE)
    assert (customer["group"], customer["payment_on_account"]["credit_limit"]) == ("trade", 15000)
    assert rig.place_order(TRADE, "PO-BEFORE").status_code == 201

    # Credit control puts the account on hold in the ERP: one PUT moves it.
    rig.erp.set_credit_hold(TRADE, True)
    held = rig.sync_customers().customers
    assert (held.credit_holds_applied, held.updated, held.api_calls) == (1, 1, 1)
    customer = rig.portal.get_customer(TRADE)
    assert (customer["group"], customer["payment_on_account"]["credit_limit"]) == ("on-hold", 0)
    refused = rig.place_order(TRADE, "PO-HELD")
    assert refused.status_code == 403, refused.text
    log = rig.portal.get_sync_log("b2b-pipeline", "customers")
    assert log["last_full_sync_succeeded"] is True and log["errors"] == []

    # Released: back in its group with its ERP credit limit, and ordering again.
    rig.erp.set_credit_hold(TRADE, False)
    released = rig.sync_customers().customers
    assert (released.credit_holds_released, released.updated) == (1, 1)
    customer = rig.portal.get_customer(TRADE)
    assert (customer["group"], customer["payment_on_account"]["credit_limit"]) == ("trade", 15000)
    assert rig.place_order(TRADE, "PO-RELEASED").status_code == 201

    events = rig.audit.events(entity="customer", entity_key=TRADE)
    moves = events[events["action"].str.startswith("credit_hold")]
    assert moves["action"].tolist() == ["credit_hold_applied", "credit_hold_released"]
    assert set(moves["category"]) == {"AUTHORISATION"}
    assert rig.audit.exceptions(status="open").empty

    # Nothing changed since: the next sync sends no customer at all.
    again = rig.sync_customers().customers
    assert (again.api_calls, again.unchanged) == (0, 40)


def test_the_flows_run_without_dagster() -> None:
    """A flow is plain Python over its ports: importing every master-data flow (and the
    connectors a caller hands it) loads no Dagster, so the CLI can run them cheaply."""
    code = (
        "import sys\n"
        "import b2b_pipeline.flows.customer_sync, b2b_pipeline.flows.price_sync\n"
        "import b2b_pipeline.flows.price_probe, b2b_pipeline.flows.stock_sync\n"
        "import b2b_pipeline.connectors.sparklayer.client, b2b_pipeline.connectors.erp.gateway\n"
        "import b2b_pipeline.connectors.audit.store, b2b_pipeline.connectors.sync_state\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('dagster'))\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
