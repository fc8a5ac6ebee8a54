"""The sync health page: when each flow last ran, how it went, what it did, whether it is late.

Everything comes from the audit trail (``latest_events``, ``run_activity``) and the exception
queue: each sync reports itself there at the end of every run (``flows.recording.report_sync``),
the price probe and the reconciliation record one event per run, and order intake records what
it did with each order. A flow is *late* when its newest run is older than twice its schedule's
interval (one run missed); order intake runs only when orders arrive, so it is never late by
itself. A job that could not reach a system shows its open ``TRANSPORT`` exception.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from b2b_pipeline.connectors.audit.store import AuditStore
from b2b_pipeline.console.formatting import plain, record, records


@dataclass(frozen=True)
class Flow:
    name: str
    job: str
    entity: str  # the audit entity its runs record
    key: str | None  # for syncs: the data type its sync events carry
    schedule: str
    interval: timedelta | None  # None: runs when there is work (order intake)


# The schedules of DESIGN.md / the runbook's "When each flow runs" (defaults).
FLOWS: tuple[Flow, ...] = (
    Flow(
        "Orders (portal → ERP)",
        "order_intake_job",
        "order",
        None,
        "sensor every 30 s, when orders arrive",
        None,
    ),
    Flow(
        "Customers, groups and account status",
        "customer_sync_job",
        "sync",
        "customers",
        "every 15 min, and minutes after an ERP change",
        timedelta(minutes=15),
    ),
    Flow(
        "Stock",
        "inventory_sync_job",
        "sync",
        "inventory",
        "every 15 min",
        timedelta(minutes=15),
    ),
    Flow(
        "Price lists",
        "price_sync_job",
        "sync",
        "pricing",
        "nightly at 02:00 UTC, plus a sensor for changed prices",
        timedelta(days=1),
    ),
    Flow(
        "Price probe",
        "price_probe_job",
        "price_probe",
        None,
        "hourly at :20",
        timedelta(hours=1),
    ),
    Flow(
        "Month-end reconciliation",
        "month_end_job",
        "reconciliation",
        None,
        "1st of the month at 06:00 UTC; month to date daily at 06:30 UTC",
        timedelta(days=1),
    ),
)

# What a run did, in words: (entity, action) -> (one, many). Others: "entity action".
_DID = {
    ("order", "posted"): ("order posted to the ERP", "orders posted to the ERP"),
    ("order", "already_posted"): ("order already in the ERP", "orders already in the ERP"),
    ("order", "filtered"): (
        "purchase filtered (not a live order)",
        "purchases filtered (not live orders)",
    ),
    ("order", "ignored_by_decision"): ("order ignored by a person", "orders ignored by a person"),
    ("order", "erp_number_written_back"): (
        "ERP order number written back",
        "ERP order numbers written back",
    ),
    ("order", "account_auto_created"): ("ERP account created", "ERP accounts created"),
    ("customer", "created"): ("customer created", "customers created"),
    ("customer", "pushed"): ("customer updated", "customers updated"),
    ("price_list", "created"): ("price list created", "price lists created"),
    ("price_list", "pushed"): ("price pushed", "prices pushed"),
    ("price_list", "removed"): ("price removed", "prices removed"),
    ("inventory", "pushed"): ("stock level pushed", "stock levels pushed"),
}
_RAISED = {"exception_opened": "new", "exception_recurred": "still failing"}


@dataclass
class FlowHealth:
    flow: Flow
    last_at: datetime | None = None
    run_id: str | None = None
    outcome: str = "never run"
    ok: bool | None = None
    did: list[str] = field(default_factory=list)
    raised: list[str] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def age(self) -> timedelta | None:
        return self.now - self.last_at if self.last_at else None

    @property
    def freshness(self) -> str:
        if self.last_at is None:
            return "never run"
        if self.flow.interval is None:
            return "runs when there is work"
        return "late" if self.age and self.age > 2 * self.flow.interval else "on time"


def _when(value: Any) -> datetime | None:
    if plain(value) is None:
        return None
    moment = pd.Timestamp(value)
    moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
    return moment.to_pydatetime()


def _outcome(flow: Flow, event: dict[str, Any]) -> tuple[str, bool | None]:
    try:
        detail = json.loads(event.get("detail") or "{}")
    except (TypeError, ValueError):
        detail = {}
    if flow.entity == "sync":
        errors = int(detail.get("errors") or 0)
        if detail.get("succeeded") is False or errors:
            return f"finished with {errors} record(s) refused or held", False
        note = "" if event.get("action") == "sync_reported" else " (portal sync log not updated)"
        return f"succeeded{note}", True
    if flow.entity == "price_probe":
        differing = int(detail.get("differing_skus") or 0)
        accounts = int(detail.get("accounts") or 0)
        if differing:
            return f"{differing} account/SKU price(s) differ, {accounts} account(s) probed", False
        return f"{accounts} account(s) probed, every price agrees", True
    if flow.entity == "reconciliation":
        # Counted from the outcomes: the event's own "lines" figure has counted the outcomes
        # present, not the lines (see the audit store's write_reconciliation_lines).
        outcomes = detail.get("outcomes")
        if isinstance(outcomes, str):
            try:
                outcomes = json.loads(outcomes)
            except ValueError:
                outcomes = None
        if isinstance(outcomes, dict):
            lines = sum(int(n or 0) for n in outcomes.values())
        else:
            lines = int(detail.get("lines") or 0)
        noun = "order" if lines == 1 else "orders"
        return f"reconciled {event.get('entity_key')} ({lines:,} {noun})", True
    return "ran", True


def _newest(store: AuditStore, flow: Flow, cache: dict[str, pd.DataFrame]) -> dict[str, Any] | None:
    if flow.entity not in cache:
        cache[flow.entity] = store.latest_events(flow.entity, per_key=flow.entity == "sync")
    events = cache[flow.entity]
    if flow.key is not None:
        events = events[events["entity_key"] == flow.key]
    if events.empty:
        return None
    return record(events.iloc[-1])


def _activity(activity: pd.DataFrame, run_id: str) -> tuple[list[str], list[str]]:
    did = []
    raised = []
    for row in records(activity[activity["run_id"] == run_id]):
        entity, action = str(row["entity"]), str(row["action"])
        if entity == "exception" and action in _RAISED:
            raised.append(f"{row['events']} {_RAISED[action]} {row['category'] or ''}".strip())
        elif entity not in ("exception", "sync", "reconciliation", "price_probe"):
            count = int(row["events"])
            one, many = _DID.get((entity, action), (f"{entity} {action.replace('_', ' ')}",) * 2)
            did.append(f"{count:,} {one if count == 1 else many}")
    return did, raised


def read_sync_health(store: AuditStore, now: datetime | None = None) -> list[FlowHealth]:
    now = now or datetime.now(UTC)
    cache: dict[str, pd.DataFrame] = {}
    newest = {flow.job: _newest(store, flow, cache) for flow in FLOWS}
    run_ids = [event["run_id"] for event in newest.values() if event and event.get("run_id")]
    activity = store.run_activity(run_ids) if run_ids else pd.DataFrame(columns=["run_id"])
    transport = store.exception_queue(statuses=["open", "approved"], category="TRANSPORT")
    health = []
    for flow in FLOWS:
        row = FlowHealth(flow=flow, now=now)
        event = newest[flow.job]
        if event is not None:
            row.last_at = _when(event.get("occurred_at"))
            row.run_id = event.get("run_id")
            row.outcome, row.ok = _outcome(flow, event)
            if row.run_id:
                row.did, row.raised = _activity(activity, row.run_id)
        problems = transport[transport["entity_key"] == flow.job]
        if not problems.empty:
            row.ok = False
            row.outcome = "could not reach a system: see the TRANSPORT exception"
            row.problems = records(problems[["exception_id", "message", "opened_at"]])
        health.append(row)
    return health
