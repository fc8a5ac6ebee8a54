"""The connected systems one run works with, built from the Dagster resources.

Flows ask for the ``pipeline`` resource (``PipelineResource.open(run_id)``, which calls
:func:`open_systems`) and get one bundle of live connections; the command line runs the same
jobs, so a CLI retry and a sensor-driven run go through one code path. The helpers below are
what every flow does alike: audit event frames, filing (and clearing) exceptions, the sync log.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from b2b_pipeline.config.mappings import Mappings
from b2b_pipeline.connectors.alerts import AlertNotifier
from b2b_pipeline.connectors.sync_state import SyncState


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


def file_exceptions(
    systems: Systems,
    rows: pd.DataFrame,
    *,
    clears: tuple[str, frozenset[str]] | None = None,
) -> pd.DataFrame:
    """Queue exception rows (deduplicated by the store); returns them with ``is_new``.

    ``clears`` = (entity, reason codes) this step checks in full on every run: an open or
    approved exception of that kind the step did not raise again is fixed (the ERP record was
    corrected, the portal took the row), so it is resolved by the pipeline. The queue then only
    shows what still needs someone.
    """
    if rows is None or rows.empty:
        opened = pd.DataFrame(columns=["category", "reason_code", "message", "is_new"])
    else:
        opened = systems.audit.open_exceptions(rows, systems.run_id)
    if clears is not None:
        _resolve_cleared(systems, clears, rows)
    return opened


def _resolve_cleared(
    systems: Systems, clears: tuple[str, frozenset[str]], still_failing: pd.DataFrame | None
) -> None:
    entity, reasons = clears
    queue = systems.audit.exceptions(status=["open", "approved"])
    if queue.empty:
        return
    mine = queue[(queue["entity"] == entity) & queue["reason_code"].isin(reasons)]
    if still_failing is not None and not still_failing.empty:
        failing = set(
            zip(still_failing["entity_key"].astype(str), still_failing["reason_code"], strict=True)
        )
        mine = mine[
            [
                (key, reason) not in failing
                for key, reason in zip(
                    mine["entity_key"].astype(str), mine["reason_code"], strict=True
                )
            ]
        ]
    # Few rows (the problems fixed since the last run); one status change each, each audited.
    for exception_id in mine["exception_id"]:
        systems.audit.set_exception_status(
            exception_id,
            "resolved",
            by="pipeline",
            note="no longer found by the sync: the record was corrected",
            run_id=systems.run_id,
        )


SYNC_LOG_INTEGRATION = "b2b-pipeline"


def report_sync(
    systems: Systems,
    data_type: str,
    *,
    started_at,
    records_failed: int,
    errors: pd.DataFrame | None,
    completed: bool = True,
    entities: tuple[str, ...] = (),
) -> bool:
    """Report one master-data sync to SparkLayer's Sync Logging API (and the audit trail), so
    the merchant sees sync health inside the portal too. A failed report never fails the sync.

    ``entities``: the exception entities this sync covers. Every unresolved exception of those
    entities that this run filed or met again is reported too, so a record held back by an
    earlier step of the run (an ERP account with an unmapped tax code never reaches the portal
    step) shows as failed, rather than the log claiming a clean sync.
    """
    from datetime import UTC, datetime

    from b2b_pipeline.domain.sync_log import sync_log_body

    if entities:
        seen = systems.audit.open_exceptions_of_run(systems.run_id, list(entities))
        if len(seen):
            frames = [seen]
            if errors is not None and len(errors):
                frames.insert(0, errors[["entity_key", "message"]])
            errors = pd.concat(frames, ignore_index=True).drop_duplicates()
            records_failed = max(records_failed, errors["entity_key"].nunique())
    body = sync_log_body(
        started_at=started_at,
        finished_at=datetime.now(UTC),
        records_failed=records_failed,
        errors=errors,
        completed=completed,
    )
    try:
        systems.portal.put_sync_log(SYNC_LOG_INTEGRATION, data_type, body)
        reported = True
    except Exception as exc:  # sync health is informative; the sync itself already happened
        import logging

        logging.getLogger(__name__).warning(
            "sync log for %s not delivered (%s)", data_type, type(exc).__name__
        )
        reported = False
    systems.audit.record_event(
        "sync",
        data_type,
        "sync_reported" if reported else "sync_report_failed",
        run_id=systems.run_id,
        detail={
            "succeeded": body.get("last_full_sync_succeeded"),
            "errors": len(body.get("errors", [])),
        },
    )
    return reported


def column_schema_metadata(model) -> dict:
    """``dagster/column_schema`` for a Pandera model, so the asset's Columns tab fills."""
    import dagster as dg

    from b2b_pipeline.domain.schemas.master_data import column_schema

    return {
        "dagster/column_schema": dg.TableSchema(
            columns=[
                dg.TableColumn(name=name, type=kind, description=description)
                for name, kind, description in column_schema(model)
            ]
        )
    }
