"""What every flow does alike when it has acted: audit the actions, file (and clear) the
exceptions, and report the sync's health to the portal.

``record_sync_outcome`` is the one step each master-data sync ends with (it used to be the
push → audit → exceptions → sync-log sequence written out in every portal asset), so a sync
cannot forget to resolve what it fixed or claim a clean sync while records wait in the queue.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd

from b2b_pipeline.flows.ports import AuditTrail, Portal

log = logging.getLogger(__name__)

# The integration name the pipeline reports under in SparkLayer's Sync Logging API.
SYNC_LOG_INTEGRATION = "b2b-pipeline"

# (exception entity, reason codes) a step checks in full on every run.
Clears = tuple[str, frozenset[str]]

AUDIT_EVENT_COLUMNS = ["run_id", "entity", "entity_key", "action", "category", "detail"]


def audit_events(
    frame: pd.DataFrame,
    *,
    run_id: str,
    entity: str,
    key: str,
    action: str | pd.Series,
    category: str | pd.Series | None = None,
    detail_columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Audit event rows for every row of ``frame`` (vectorised: one JSON encode per frame)."""
    if frame.empty:
        return pd.DataFrame(columns=AUDIT_EVENT_COLUMNS)
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


def record_events(audit: AuditTrail, events: pd.DataFrame | Iterable[pd.DataFrame]) -> int:
    """Append audit events in one bulk write; returns how many were written."""
    frames = [events] if isinstance(events, pd.DataFrame) else list(events)
    frames = [f for f in frames if not f.empty]
    if not frames:
        return 0
    return audit.append_events(pd.concat(frames, ignore_index=True))


def file_exceptions(
    audit: AuditTrail,
    rows: pd.DataFrame | None,
    *,
    run_id: str,
    clears: Clears | None = None,
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
        opened = audit.open_exceptions(rows, run_id)
    if clears is not None:
        _resolve_cleared(audit, clears, rows, run_id)
    return opened


def new_exception_count(opened: pd.DataFrame) -> int:
    return int(opened["is_new"].sum()) if len(opened) else 0


def _resolve_cleared(
    audit: AuditTrail, clears: Clears, still_failing: pd.DataFrame | None, run_id: str
) -> None:
    entity, reasons = clears
    queue = audit.exceptions(status=["open", "approved"])
    if queue.empty:
        return
    mine = queue[(queue["entity"] == entity) & queue["reason_code"].isin(reasons)]
    if still_failing is not None and not still_failing.empty:
        failing = pd.MultiIndex.from_arrays(
            [still_failing["entity_key"].astype(str), still_failing["reason_code"]]
        )
        keys = pd.MultiIndex.from_arrays([mine["entity_key"].astype(str), mine["reason_code"]])
        mine = mine[~keys.isin(failing)]
    # Few rows (the problems fixed since the last run); one status change each, each audited.
    for exception_id in mine["exception_id"]:
        audit.set_exception_status(
            exception_id,
            "resolved",
            by="pipeline",
            note="no longer found by the sync: the record was corrected",
            run_id=run_id,
        )


def report_sync(
    portal: Portal,
    audit: AuditTrail,
    data_type: str,
    *,
    run_id: str,
    started_at: datetime,
    records_failed: int,
    errors: pd.DataFrame | None,
    completed: bool = True,
    entities: Sequence[str] = (),
) -> bool:
    """Report one master-data sync to SparkLayer's Sync Logging API (and the audit trail), so
    the merchant sees sync health inside the portal too. A failed report never fails the sync.

    ``entities``: the exception entities this sync covers. Every unresolved exception of those
    entities that this run filed or met again is reported too, so a record held back by an
    earlier step of the run (an ERP account with an unmapped tax code never reaches the portal
    step) shows as failed, rather than the log claiming a clean sync.
    """
    from b2b_pipeline.domain.sync_log import sync_log_body

    if entities:
        seen = audit.open_exceptions_of_run(run_id, list(entities))
        if len(seen):
            frames = [seen]
            if errors is not None and len(errors):
                frames.insert(0, errors[["entity_key", "message"]])
            errors = pd.concat(frames, ignore_index=True).drop_duplicates()
            records_failed = max(records_failed, int(errors["entity_key"].nunique()))
    body = sync_log_body(
        started_at=started_at,
        finished_at=datetime.now(UTC),
        records_failed=records_failed,
        errors=errors,
        completed=completed,
    )
    try:
        portal.put_sync_log(SYNC_LOG_INTEGRATION, data_type, body)
        reported = True
    except Exception as exc:  # sync health is informative; the sync itself already happened
        log.warning("sync log for %s not delivered (%s)", data_type, type(exc).__name__)
        reported = False
    audit.record_event(
        "sync",
        data_type,
        "sync_reported" if reported else "sync_report_failed",
        run_id=run_id,
        detail={
            "succeeded": body.get("last_full_sync_succeeded"),
            "errors": len(body.get("errors", [])),
        },
    )
    return reported


@dataclass
class SyncOutcome:
    """What one master-data sync step did, ready to be recorded.

    ``events``: audit rows of what reached the portal; ``exceptions``: rows the portal refused
    or the pipeline held back (``domain.exceptions.exception_frame``); ``went_through``: keys
    of ``entity`` the portal took, whose earlier exceptions are now resolved.
    """

    data_type: str
    entity: str
    started_at: datetime
    events: list[pd.DataFrame] = field(default_factory=list)
    exceptions: pd.DataFrame | None = None
    clears: Clears | None = None
    went_through: Sequence[str] = ()
    records_failed: int = 0
    # Exception entities the sync log covers (default: just ``entity``).
    reported_entities: Sequence[str] | None = None


def record_sync_outcome(
    outcome: SyncOutcome, *, portal: Portal, audit: AuditTrail, run_id: str
) -> pd.DataFrame:
    """Audit, queue, resolve and report one sync step; returns the filed exceptions (``is_new``)."""
    record_events(audit, outcome.events)
    exceptions = outcome.exceptions
    opened = file_exceptions(audit, exceptions, run_id=run_id, clears=outcome.clears)
    if outcome.went_through:
        audit.resolve_exceptions_for(outcome.entity, list(outcome.went_through), run_id)
    report_sync(
        portal,
        audit,
        outcome.data_type,
        run_id=run_id,
        started_at=outcome.started_at,
        records_failed=outcome.records_failed,
        errors=exceptions if exceptions is not None and len(exceptions) else None,
        entities=tuple(outcome.reported_entities or (outcome.entity,)),
    )
    return opened
