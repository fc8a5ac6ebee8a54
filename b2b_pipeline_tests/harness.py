"""An end-to-end harness: the real simulator, a seeded SQLite ERP and a DuckDB audit file,
with the project's own Dagster definitions bound to them and run in-process.

Tests drive it like an operator would: change something in the ERP or place an order in the
portal (through the simulator's buyer endpoints), run a job, then look at the portal, the ERP,
the exception queue and the audit trail.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import pandas as pd
import pytest
import requests

from b2b_pipeline.connectors.audit.store import AuditStore
from b2b_pipeline.connectors.erp.reference_edits import ReferenceErp
from b2b_pipeline.connectors.sparklayer.client import SparkLayerClient
from b2b_pipeline.connectors.sync_state import SyncState

if TYPE_CHECKING:
    from b2b_pipeline.flows.order_intake import IntakeWindow, OrderIntakeResult
    from b2b_pipeline.simulator.server import SimulatorServer


@dataclass
class Pipeline:
    url: str
    erp: ReferenceErp
    audit: AuditStore
    portal: SparkLayerClient
    data_dir: Path

    @property
    def state(self) -> SyncState:
        state = SyncState(self.audit.path)
        state.ensure_schema()
        return state

    def definitions(self) -> dg.Definitions:
        # Built after the environment points at this test's systems.
        from b2b_pipeline.definitions import build_definitions

        return build_definitions()

    def run(
        self,
        job_name: str,
        run_config: dict[str, Any] | None = None,
        *,
        partition_key: str | None = None,
        raise_on_error: bool = True,
    ) -> dg.ExecuteInProcessResult:
        job = self.definitions().resolve_job_def(job_name)
        return job.execute_in_process(
            run_config=run_config or {},
            instance=dg.DagsterInstance.ephemeral(),
            partition_key=partition_key,
            raise_on_error=raise_on_error,
        )

    def metadata(self, result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
        for event in result.get_asset_materialization_events():
            if event.materialization.asset_key.to_user_string() == asset:
                return {
                    k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()
                }
        raise KeyError(f"{asset} was not materialised in this run")

    def checks(self, result: dg.ExecuteInProcessResult) -> dict[str, bool]:
        return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}

    # The buyer and the harness, through the simulator's /_sim endpoints ---------------------
    def place_order(
        self,
        customer: str,
        lines: list[dict[str, Any]],
        *,
        type: str = "order",
        payment_method: str = "on_account",
        customer_reference: str = "PO-1001",
        **extra: Any,
    ) -> requests.Response:
        """A buyer places a purchase (contract v2 §7): an order by default, Pay on Account."""
        return requests.post(
            f"{self.url}/_sim/orders",
            json={
                "customer": customer,
                "type": type,
                "payment_method": payment_method,
                "customer_reference": customer_reference,
                "lines": lines,
                **extra,
            },
            timeout=10,
        )

    def order(self, customer: str, lines: list[dict[str, Any]], **kwargs: Any) -> dict:
        response = self.place_order(customer, lines, **kwargs)
        assert response.status_code == 201, response.text
        return response.json()

    def change_purchase(self, purchase_id: str, **change: Any) -> dict:
        """The buyer moves a purchase on: ``type="order"`` confirms a quote or an unconfirmed
        order, ``calculated_fulfilment_status="cancelled"`` cancels it."""
        response = requests.patch(
            f"{self.url}/_sim/purchases/{purchase_id}", json=change, timeout=10
        )
        assert response.ok, response.text
        return response.json()

    def confirm(self, purchase_id: str) -> dict:
        return self.change_purchase(purchase_id, type="order")

    def cancel(self, purchase_id: str) -> dict:
        return self.change_purchase(purchase_id, calculated_fulfilment_status="cancelled")

    def map_company(self, company_id: str, account_code: str) -> None:
        """Give a portal company its ERP account (``accounting_id``), as the customer sync or an
        account manager would."""
        customer = self.portal.get_customer(company_id, lookup_by="sparklayer")
        assert customer is not None, company_id
        self.portal.put_customer({**customer, "accounting_id": account_code}, "sparklayer")

    def erp_unit_price(self, account: str, sku: str, quantity: int) -> float:
        """What the ERP's own price rule charges this account (the order check's yardstick)."""
        from b2b_pipeline.domain.pricing import resolve_unit_prices

        prices = resolve_unit_prices(
            pd.DataFrame(
                {"line_key": [0], "account_code": [account], "sku": [sku], "quantity": [quantity]}
            ),
            self.erp.read_customers(),
            self.erp.read_price_lists(),
            self.erp.read_price_list_items(),
        )
        return float(prices["erp_unit_price"].iloc[0])

    def order_intake(
        self,
        window: IntakeWindow | None = None,
        *,
        run_id: str = "flow-test",
        webhook_url: str | None = None,
    ) -> OrderIntakeResult:
        """The order intake flow called directly, on the real connectors, without Dagster."""
        from b2b_pipeline.config.mappings import load_mappings
        from b2b_pipeline.connectors.alerts import AlertNotifier
        from b2b_pipeline.flows.order_intake import run_order_intake

        return run_order_intake(
            portal=self.portal,
            erp=self.erp,
            audit=self.audit,
            state=SyncState(self.audit.path),
            mappings=load_mappings(None),
            alerts=AlertNotifier(webhook_url),
            run_id=run_id,
            window=window,
        )

    def register_company(self, name: str, email: str) -> dict:
        response = requests.post(
            f"{self.url}/_sim/customers/register",
            json={"company_name": name, "email": email},
            timeout=10,
        )
        assert response.status_code in (200, 201), response.text
        return response.json()

    def calls(self) -> dict:
        return requests.get(f"{self.url}/_sim/calls", timeout=10).json()

    def reset_calls(self) -> None:
        requests.delete(f"{self.url}/_sim/calls", timeout=10).raise_for_status()

    def faults(self, **faults: Any) -> None:
        requests.put(f"{self.url}/_sim/faults", json=faults, timeout=10).raise_for_status()

    def sales_orders(self) -> Any:
        import datetime as dt

        return self.erp.read_sales_orders(
            dt.datetime(2000, 1, 1, tzinfo=dt.UTC), dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
        )


# --- a portal filled by the project's own master-data sync --------------------------------------


def sync_master_data() -> None:
    """Prices and customers to the portal, as the schedules do before orders arrive (prices
    first: a customer is pointed at its price lists only once they are filled), with the
    project's own jobs on the systems the environment names."""
    from b2b_pipeline.definitions import build_definitions

    defs = build_definitions()
    for job, config in (
        ("price_sync_job", {"ops": {"portal_price_lists": {"config": {"full_comparison": True}}}}),
        ("customer_sync_job", {}),
    ):
        result = defs.resolve_job_def(job).execute_in_process(
            run_config=config, instance=dg.DagsterInstance.ephemeral()
        )
        assert result.success, job


def save_synced_portal(folder: Path) -> Path:
    """The simulator's saved state (a file in ``folder``) after the project's price and customer
    syncs of the demo ERP. The ERP seed is deterministic, so any freshly seeded ERP is the one
    this portal was synced from: a module syncs once (about 3 s) and each test starts its own
    simulator from a copy (:func:`simulator_from`)."""
    from b2b_pipeline.connectors.audit.store import AuditStore
    from b2b_pipeline.connectors.erp.reference_edits import ReferenceErp
    from b2b_pipeline.demo import seed_erp
    from b2b_pipeline.simulator.server import SimulatorServer
    from b2b_pipeline_tests.conftest import CLIENT_ID, CLIENT_SECRET, SITE_ID

    state = folder / "portal.state"
    server = SimulatorServer(
        "127.0.0.1",
        0,
        site_id=SITE_ID,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        state_path=state,
    )
    server.start()
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("B2B_DATA_DIR", str(folder))
            env.setenv("SPARKLAYER_BASE_URL", server.url)
            env.setenv("SPARKLAYER_SITE_ID", SITE_ID)
            env.setenv("SPARKLAYER_CLIENT_ID", CLIENT_ID)
            env.setenv("SPARKLAYER_CLIENT_SECRET", CLIENT_SECRET)
            env.setenv("SPARKLAYER_REQUESTS_PER_SECOND", "1000")
            env.setenv("ERP_DATABASE_URL", f"sqlite:///{folder / 'erp.sqlite'}")
            env.setenv("B2B_AUDIT_DB", str(folder / "audit.duckdb"))
            env.delenv("B2B_MAPPINGS", raising=False)
            env.delenv("B2B_ALERT_WEBHOOK_URL", raising=False)
            gateway = ReferenceErp(f"sqlite:///{folder / 'erp.sqlite'}")
            gateway.create_schema()
            seed_erp(gateway)
            gateway.dispose()
            AuditStore(folder / "audit.duckdb").ensure_schema()
            sync_master_data()
    finally:
        server.stop()  # saves the state
    return state


@contextmanager
def simulator_from(saved_state: Path, folder: Path) -> Iterator[SimulatorServer]:
    """A simulator on a free loopback port, starting from a private copy of a saved portal."""
    from b2b_pipeline.simulator.server import SimulatorServer
    from b2b_pipeline_tests.conftest import CLIENT_ID, CLIENT_SECRET, SITE_ID

    state = folder / "portal.state"
    shutil.copyfile(saved_state, state)
    server = SimulatorServer(
        "127.0.0.1",
        0,
        site_id=SITE_ID,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        state_path=state,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
