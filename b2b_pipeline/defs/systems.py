"""The connected systems one run works with, built from the Dagster resources.

Assets ask for the resources they need and call :func:`open_systems` to get live connections;
the same bundle serves the command line, so a CLI retry and a sensor-driven run go through one
code path.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from b2b_pipeline.config.mappings import Mappings
from b2b_pipeline.connectors.alerts import AlertNotifier
from b2b_pipeline.connectors.sync_state import SyncState

AUDIT_WRITER_POOL = "audit_writer"


@dataclass
class Systems:
    portal: Any  # SparkLayerClient
    erp: Any  # ErpGateway
    audit: Any  # AuditStore
    state: SyncState
    mappings: Mappings
    alerts: AlertNotifier
    run_id: str

    def record(self, events: pd.DataFrame | Iterable[pd.DataFrame]) -> int:
        """Append audit events (one bulk write)."""
        frames = [events] if isinstance(events, pd.DataFrame) else list(events)
        frames = [f for f in frames if not f.empty]
        if not frames:
            return 0
        return self.audit.append_events(pd.concat(frames, ignore_index=True))


def open_systems(*, sparklayer, erp, audit, alerts, mappings, run_id: str) -> Systems:
    store = audit.get_store()
    state = SyncState(store.path)
    state.ensure_schema()
    return Systems(
        portal=sparklayer.get_client(),
        erp=erp.get_gateway(),
        audit=store,
        state=state,
        mappings=mappings.load(),
        alerts=alerts.get_notifier(),
        run_id=run_id,
    )


def audit_events(
    frame: pd.DataFrame,
    *,
    run_id: str,
    entity: str,
    key: str,
    action: str | pd.Series,
    category: str | pd.Series | None = None,
    detail_columns: list[str] | None = None,
) -> pd.DataFrame:
    """Audit event rows for every row of ``frame`` (vectorised: one JSON encode per frame)."""
    if frame.empty:
        return pd.DataFrame(
            columns=["run_id", "entity", "entity_key", "action", "category", "detail"]
        )
    columns = [c for c in (detail_columns or []) if c in frame.columns]
    if columns:
        detail = frame[columns].to_json(orient="records", lines=True, date_format="iso")
        details = detail.splitlines()
    else:
        details = ["{}"] * len(frame)
    return pd.DataFrame(
        {
            "run_id": run_id,
            "entity": entity,
            "entity_key": frame[key].astype(str).to_numpy(),
            "action": action if isinstance(action, str) else action.to_numpy(),
            "category": category if not isinstance(category, pd.Series) else category.to_numpy(),
            "detail": details,
        }
    )


def one_event(
    run_id: str,
    entity: str,
    key: str,
    action: str,
    detail: dict | None = None,
    category: str | None = None,
) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "run_id": run_id,
                "entity": entity,
                "entity_key": key,
                "action": action,
                "category": category,
                "detail": json.dumps(detail or {}, default=str, sort_keys=True),
            }
        ]
    )
