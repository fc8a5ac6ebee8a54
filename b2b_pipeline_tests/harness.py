"""An end-to-end harness: the real simulator, a seeded SQLite ERP and a DuckDB audit file,
with the project's own Dagster definitions bound to them and run in-process.

Tests drive it like an operator would: change something in the ERP or place an order in the
portal (through the simulator's buyer endpoints), run a job, then look at the portal, the ERP,
the exception queue and the audit trail.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import requests

from b2b_pipeline.connectors.audit.store import AuditStore
from b2b_pipeline.connectors.erp.gateway import ErpGateway
from b2b_pipeline.connectors.sparklayer.client import SparkLayerClient
from b2b_pipeline.connectors.sync_state import SyncState


@dataclass
class Pipeline:
    url: str
    erp: ErpGateway
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
