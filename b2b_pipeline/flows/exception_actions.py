"""What a person does with an exception: approve, ignore, retry, resolve, and the queue itself.

The command line (``b2b-pipeline exceptions``) and the web console call these functions, so a
decision replays the same rules whichever screen it was taken on. Each action checks that it
fits the exception (only a pricing difference takes a price decision, a closed exception takes
no decision) and says why in words when it refuses; each one that happens lands in
``audit_events`` with the acting user (``by``); each returns an :class:`ActionResult` whose
``message`` is written for a finance or operations reader.

Public functions (stable: the console is built on them)::

    list_exceptions(audit, *, status="open", category=None, reason_code=None,
                    account_code=None, older_than_hours=None, limit=None) -> pd.DataFrame
    find_exception(audit, reference) -> dict[str, Any] | None
    approve_exception(audit, exception_id, *, by, decision=None, note=None,
                      portal=None, erp=None) -> ActionResult
    ignore_exception(audit, exception_id, *, by, reason) -> ActionResult
    retry_exceptions(audit, exception_ids, *, by, run_job) -> list[ActionResult]
    resolve_exception(audit, exception_id, *, by, note) -> ActionResult
    retry_summary(results) -> str

The pipeline's own actions on the queue (the monitoring sensors call them)::

    file_transport_failure(audit, alerts, *, job, run_id, reason_code, detail) -> int
    clear_transport_failure(audit, *, job, run_id) -> int

Every action returns ``ActionResult(exception_id, ok, message, action, status, order_number,
decision, run_id, refused, failed, next_step)``: ``ok`` False with ``refused`` True means the
action did not fit (nothing changed; ``message`` says why and what to do instead); a retry
with ``failed`` True could not run its job (a system was down; nothing changed); a retry with
neither still waits, and ``message`` says for what. ``status`` is the exception's status after
the action, ``order_number`` the buyer-visible number (``SL-100003``) of an order exception,
``run_id`` the pipeline run a retry started.

``decision`` is a :class:`Decision` (or a mapping with the same keys):

- a pricing difference (``PRICE_MISMATCH``): ``Decision(accept="erp_price")`` or
  ``"portal_price"``: the order is posted at that price on its retry;
- an unmapped or unknown account (``UNMAPPED_ACCOUNT``, ``UNKNOWN_ACCOUNT``):
  ``Decision(account_code="CUST0042")``: the ERP account must exist and be active; the portal
  company is pointed at it (so ``portal`` and ``erp`` must be given), then the order retried;
- a credit hold (``ACCOUNT_ON_HOLD``): ``Decision(post_on_hold=True)``: posted ``ON_HOLD``.

Every other reason is approved by fixing its cause (the message says how) and retrying, so
``approve_exception`` refuses it and says what to do instead.

Approving records the decision only; the order is posted by the retry that follows
(``retry_exceptions``), which replays every rule with the decision applied. The CLI's
``approve`` does both unless ``--no-retry``; the console offers the retry beside the result.

``run_job(job_name, params) -> RunSummary`` runs a pipeline job for a retry and keeps Dagster
out of this module. ``params`` is ``{"purchase_ids": [...]}`` for ``order_intake_job`` (replay
exactly those purchases) and ``{}`` for every other job; ``b2b_pipeline.cli.runner.run_retry``
turns them into the job's run config (``defs.orders.assets.retry_run_config``) and runs the job
in-process on the pipeline's own definitions.

A retry is recorded as ``exception_retry_requested`` (who, which job) before its run starts.

``ignore`` closes an exception that needs no action (the customer cancelled; an ignored order
is never posted). ``resolve`` records that the cause was dealt with outside the pipeline (an
order keyed into the ERP by hand): nothing is replayed. Both need a reason, which is kept.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:  # pandas only for the listing; importing the actions stays cheap
    import pandas as pd

    from b2b_pipeline.flows.ports import Alerts, AuditTrail, Erp, Portal

# Statuses that still wait for someone (or for the next retry).
WAITING = ("open", "approved")
STATUSES = ("open", "approved", "resolved", "ignored")

# Which job replays an exception of each entity (orders: order_intake_job with the ids).
RETRY_JOBS = {
    "customer": "customer_sync_job",
    "customer_group": "customer_sync_job",
    "price_list": "price_sync_job",
    # A portal price that differs from the ERP's is re-probed (a fix closes it); the repair
    # itself is the price sync's full comparison (runbook).
    "customer_price": "price_probe_job",
    "inventory": "inventory_sync_job",
}
ORDER_JOB = "order_intake_job"
# A TRANSPORT exception is about a job (its entity_key): retrying it is running that job again.
TRANSPORT_REASONS = frozenset({"PORTAL_UNREACHABLE", "ERP_UNREACHABLE"})

PRICE_CHOICES = ("erp_price", "portal_price")
MAPPING_REASONS = frozenset({"UNMAPPED_ACCOUNT", "UNKNOWN_ACCOUNT"})

Accept = Literal["erp_price", "portal_price"]
Action = Literal["approve", "ignore", "retry", "resolve"]


class RunSummary(Protocol):
    """What a retry needs to know of the run it started (``cli.runner.JobSummary``)."""

    @property
    def success(self) -> bool: ...
    @property
    def run_id(self) -> str: ...
    @property
    def error(self) -> str | None: ...


RunJob = Callable[[str, Mapping[str, Any]], RunSummary]


@dataclass(frozen=True)
class Decision:
    """The decision an approval carries; which field applies depends on the exception."""

    accept: Accept | None = None
    account_code: str | None = None
    post_on_hold: bool = False

    @classmethod
    def of(cls, value: Decision | Mapping[str, Any] | None) -> Decision:
        """From a form or the command line: ``{"accept": "erp-price"}`` reads as erp_price."""
        if value is None:
            return cls()
        if isinstance(value, Decision):
            return value
        accept = value.get("accept")
        if isinstance(accept, str):
            accept = accept.strip().lower().replace("-", "_") or None
        account = value.get("account_code")
        account = str(account).strip() or None if account is not None else None
        return cls(
            accept=accept,  # type: ignore[arg-type]  # checked by approve_exception
            account_code=account,
            post_on_hold=bool(value.get("post_on_hold")),
        )

    def recorded(self) -> dict[str, Any]:
        """The decision as stored on the exception and replayed by the order rules."""
        return {k: v for k, v in asdict(self).items() if v not in (None, False)}


@dataclass(frozen=True)
class ActionResult:
    """What an action did, in words a finance or operations person reads.

    ``ok`` is False when the action was refused (``message`` says why and what to do) or, for a
    retry, when the exception is still waiting afterwards. ``status`` is the exception's status
    after the action (None when there is no such exception).
    """

    exception_id: str
    ok: bool
    message: str
    action: Action = "approve"
    status: str | None = None
    # The buyer-visible order number (SL-100003) for an order exception, else None.
    order_number: str | None = None
    decision: dict[str, Any] | None = None
    # The pipeline run a retry started, to link to it.
    run_id: str | None = None
    # True when the action was refused (nothing changed); False for an action that happened,
    # including a retry after which the exception still waits.
    refused: bool = False
    # True when the run a retry needed failed (a system could not be reached): nothing changed.
    failed: bool = False
    # What to do next, when something is left to do (e.g. "Retry it to post it.").
    next_step: str | None = None


# -- the queue --------------------------------------------------------------------------------


def list_exceptions(
    audit: AuditTrail,
    *,
    status: str | Iterable[str] | None = "open",
    category: str | None = None,
    reason_code: str | None = None,
    account_code: str | None = None,
    older_than_hours: float | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """The queue, oldest first, with ``order_number`` (the buyer-visible number, for orders).

    ``status``: one status, several, or None (or ``"all"``) for every status. Category and
    reason are matched whatever their case (``pricing`` is PRICING). Columns: the
    ``exceptions`` table's (payload included) plus ``order_number`` and ``age_hours``.
    """
    statuses = _statuses(status)
    queue = audit.exception_queue(
        statuses=statuses,
        category=category.strip().upper() if category else None,
        reason_code=reason_code.strip().upper() if reason_code else None,
        account_code=account_code.strip() if account_code else None,
        older_than_hours=older_than_hours,
        limit=limit,
    )
    return _with_order_numbers(queue)


def find_exception(audit: AuditTrail, reference: str) -> dict[str, Any] | None:
    """An exception by its id, a unique prefix of it, or the order number the buyer sees
    (``SL-100003``: the newest exception of that order still waiting, else its newest one)."""
    reference = reference.strip()
    if not reference:
        return None
    exact = _records(audit, [reference])
    if exact:
        return _labelled(exact[0])
    matches = _with_order_numbers(audit.find_exceptions(reference))
    if matches.empty:
        # An order too malformed to be tracked names its number only in its payload.
        queue = list_exceptions(audit, status=None)
        matches = queue[queue["order_number"].astype(str).str.upper() == reference.upper()]
        if matches.empty:
            return None
    by_order = matches[matches["order_number"].astype(str).str.upper() == reference.upper()]
    if not by_order.empty:
        waiting = by_order[by_order["status"].isin(WAITING)]
        chosen = (waiting if not waiting.empty else by_order).iloc[-1]
        return _labelled(_records(audit, [str(chosen["exception_id"])])[0])
    by_prefix = matches[matches["exception_id"].astype(str).str.startswith(reference)]
    if len(by_prefix) == 1:
        return _labelled(_records(audit, [str(by_prefix.iloc[0]["exception_id"])])[0])
    return None


# -- actions ----------------------------------------------------------------------------------


def approve_exception(
    audit: AuditTrail,
    exception_id: str,
    *,
    by: str,
    decision: Decision | Mapping[str, Any] | None = None,
    note: str | None = None,
    portal: Portal | None = None,
    erp: Erp | None = None,
) -> ActionResult:
    """Approve with the decision the exception's rule needs (see the module notes).

    Records the decision (status ``approved``, audited under ``by``); the retry that follows
    posts the order with it. A mapping decision also points the portal company at the ERP
    account, so it needs ``portal`` and ``erp``.
    """
    refused = _refusal("approve", audit, exception_id, by)
    if isinstance(refused, ActionResult):
        return refused
    record = refused
    label = record["label"]
    reason = str(record["reason_code"])
    category = str(record["category"])
    chosen = Decision.of(decision)

    def no(message: str) -> ActionResult:
        return _result(record, "approve", ok=False, message=message, refused=True)

    if chosen.accept is not None and reason != "PRICE_MISMATCH":
        return no(
            f"Only a pricing difference takes a price decision; {record['exception_id']} is "
            f"{category} {reason}. {_what_to_do(reason)}"
        )
    if chosen.account_code is not None and reason not in MAPPING_REASONS:
        return no(
            f"Only an order from a company with no ERP account takes an account; "
            f"{record['exception_id']} is {category} {reason}. {_what_to_do(reason)}"
        )
    if chosen.post_on_hold and reason != "ACCOUNT_ON_HOLD":
        return no(
            f"Only an order from an account on credit hold can be posted on hold; "
            f"{record['exception_id']} is {category} {reason}. {_what_to_do(reason)}"
        )

    if reason == "PRICE_MISMATCH":
        if chosen.accept is None:
            return no(
                f"{label} is a pricing difference: choose the price to post it at, the ERP's "
                "(accept erp_price) or the portal's (accept portal_price)."
            )
        if chosen.accept not in PRICE_CHOICES:
            return no(f"The price to accept is erp_price or portal_price, not {chosen.accept!r}.")
        which = "the ERP's price" if chosen.accept == "erp_price" else "the portal's price"
        done = f"{label} approved by {by}: it will be posted at {which}."
    elif reason in MAPPING_REASONS:
        if chosen.account_code is None:
            return no(
                f"{label} comes from a portal company with no ERP account: name the ERP "
                "account to map the company to (account_code)."
            )
        if portal is None or erp is None:
            return no(
                "Mapping a company to an ERP account needs the portal and the ERP; this "
                "screen was opened without them."
            )
        problem = _map_company(portal, erp, record, chosen.account_code)
        if problem:
            return no(problem)
        done = (
            f"{label} approved by {by}: the portal company now points at ERP account "
            f"{chosen.account_code}, and the order will be posted to it."
        )
    elif reason == "ACCOUNT_ON_HOLD":
        if not chosen.post_on_hold:
            return no(
                f"{label} is from an account on credit hold: release the hold in the ERP and "
                "retry, or approve posting it ON_HOLD (post_on_hold)."
            )
        done = f"{label} approved by {by}: it will be posted ON_HOLD."
    else:
        return no(f"{reason} is not approved but fixed: {_what_to_do(reason)}")

    recorded = chosen.recorded()
    audit.set_exception_status(
        record["exception_id"], "approved", by=by, note=note, decision=recorded
    )
    return _result(
        record,
        "approve",
        ok=True,
        message=done,
        status="approved",
        decision=recorded,
        next_step="Retry it to post it." if record["entity"] == "order" else "Retry it.",
    )


def ignore_exception(audit: AuditTrail, exception_id: str, *, by: str, reason: str) -> ActionResult:
    """Close an exception that needs no action; an ignored order is never posted."""
    return _close(
        audit,
        exception_id,
        action="ignore",
        status="ignored",
        by=by,
        text=reason,
        asked="Say why it needs no action (the reason is kept).",
        done=lambda record, text: (
            f"{record['label']} ignored by {by}: {text}."
            + (" It will not be posted to the ERP." if record["entity"] == "order" else "")
        ),
    )


def resolve_exception(audit: AuditTrail, exception_id: str, *, by: str, note: str) -> ActionResult:
    """Record that the cause was dealt with outside the pipeline; nothing is replayed."""
    return _close(
        audit,
        exception_id,
        action="resolve",
        status="resolved",
        by=by,
        text=note,
        asked="Say how it was dealt with (the note is kept in the audit trail).",
        done=lambda record, text: f"{record['label']} marked resolved by {by}: {text}.",
    )


def _close(
    audit: AuditTrail,
    exception_id: str,
    *,
    action: Action,
    status: str,
    by: str,
    text: str,
    asked: str,
    done: Callable[[dict[str, Any], str], str],
) -> ActionResult:
    """Ignore and resolve: a person closes the exception with a text that says why, kept as
    its note; refused (nothing changes) without one."""
    refused = _refusal(action, audit, exception_id, by)
    if isinstance(refused, ActionResult):
        return refused
    record = refused
    why = (text or "").strip()
    if not why:
        return _result(record, action, ok=False, message=asked, refused=True)
    audit.set_exception_status(record["exception_id"], status, by=by, note=why)
    return _result(record, action, ok=True, message=done(record, why), status=status)


def retry_exceptions(
    audit: AuditTrail,
    exception_ids: Sequence[str],
    *,
    by: str,
    run_job: RunJob,
) -> list[ActionResult]:
    """Replay every rule for these exceptions (one run per job, orders in one batch); one
    result per id, in the order given. A success resolves the exception; one still waiting
    afterwards says why (its reason may have changed: a fixed price reveals a credit hold)."""
    ids = list(dict.fromkeys(str(i) for i in exception_ids))
    if not by or not by.strip():
        return [
            ActionResult(
                i, False, "Say who is retrying (it is recorded).", action="retry", refused=True
            )
            for i in ids
        ]
    records = {r["exception_id"]: _labelled(r) for r in _records(audit, ids)}
    results: dict[str, ActionResult] = {}
    jobs: dict[str, list[dict[str, Any]]] = {}
    for exception_id in ids:
        record = records.get(exception_id)
        if record is None:
            results[exception_id] = ActionResult(
                exception_id,
                False,
                f"There is no exception {exception_id}.",
                action="retry",
                refused=True,
            )
            continue
        if record["status"] not in WAITING:
            results[exception_id] = _result(
                record, "retry", ok=False, message=_closed(record), refused=True
            )
            continue
        job = _retry_job(record)
        if job is None:
            results[exception_id] = _result(
                record,
                "retry",
                ok=False,
                message=f"{record['label']} is not replayed by a run: "
                f"{_what_to_do(str(record['reason_code']))}",
                refused=True,
            )
            continue
        jobs.setdefault(job, []).append(record)
    if jobs:
        _audit_retry_requests(audit, jobs, by)
    runs: dict[str, RunSummary] = {}
    # Orders first: they are what a customer waits for.
    for job in sorted(jobs, key=lambda name: (name != ORDER_JOB, name)):
        params: dict[str, Any] = {}
        if job == ORDER_JOB:
            params = {"purchase_ids": [str(r["entity_key"]) for r in jobs[job]]}
        runs[job] = run_job(job, params)
    if jobs:
        retried = [r for group in jobs.values() for r in group]
        after = {
            r["exception_id"]: r for r in _records(audit, [r["exception_id"] for r in retried])
        }
        # Only what a retry may have reopened under another reason: ids, reasons, messages.
        waiting = audit.exception_queue(statuses=list(WAITING))
        for job, group in jobs.items():
            summary = runs[job]
            for record in group:
                results[record["exception_id"]] = _after_retry(
                    record, after.get(record["exception_id"], record), summary, job, waiting
                )
    return [results[i] for i in ids]


def retry_summary(results: Sequence[ActionResult]) -> str:
    """One line over a bulk retry: how many went through and how many still wait."""
    if not results:
        return "Nothing to retry."
    through = sum(1 for r in results if r.ok)
    return f"Retried {len(results)}: {through} resolved, {len(results) - through} still waiting."


# -- helpers ----------------------------------------------------------------------------------


def _statuses(status: str | Iterable[str] | None) -> list[str]:
    if status is None:
        return []
    wanted = [status] if isinstance(status, str) else list(status)
    wanted = [s.strip().lower() for s in wanted]
    if "all" in wanted:
        return []
    unknown = sorted(set(wanted) - set(STATUSES))
    if unknown:
        raise ValueError(f"status must be one of {', '.join(STATUSES)} or all, not {unknown}")
    return wanted


def _with_order_numbers(queue: pd.DataFrame) -> pd.DataFrame:
    """Fill ``order_number`` from the payload where order tracking has none (an order too
    malformed to track still names its number in what the portal sent)."""
    if "order_number" not in queue.columns:
        queue = queue.assign(order_number=None)
    if queue.empty or "payload" not in queue.columns:
        return queue
    missing = queue["order_number"].isna() & (queue["entity"] == "order")
    if missing.any():
        queue = queue.copy()
        queue.loc[missing, "order_number"] = queue.loc[missing, "payload"].map(_payload_number)
    return queue


def _payload_number(payload: Any) -> str | None:
    from b2b_pipeline.connectors.sparklayer.purchases import visible_id

    try:
        document = json.loads(payload) if isinstance(payload, str) else payload
        return visible_id(document) if document else None
    except (TypeError, ValueError, AttributeError):
        return None


def _labelled(record: dict[str, Any] | None) -> dict[str, Any]:
    """The record with ``order_number`` and ``label`` ("Order SL-100003", "customer CUST0042")."""
    if record is None:
        return {}
    record = dict(record)
    if record.get("entity") == "order":
        number = record.get("order_number") or _payload_number(record.get("payload"))
        record["order_number"] = number
        record["label"] = f"Order {number or record.get('entity_key')}"
    else:
        record.setdefault("order_number", None)
        record["label"] = f"{str(record.get('entity', '')).replace('_', ' ')} " + str(
            record.get("entity_key")
        )
        record["label"] = record["label"][:1].upper() + record["label"][1:]
    return record


def _records(audit: AuditTrail, ids: list[str]) -> list[dict[str, Any]]:
    if not ids:
        return []
    frame = _with_order_numbers(audit.exceptions_by_id(ids))
    records = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
    return [{str(key): value for key, value in record.items()} for record in records]


def _refusal(
    action: str, audit: AuditTrail, exception_id: str, by: str
) -> ActionResult | dict[str, Any]:
    """The labelled record when the action may go ahead, else the refusal."""
    verb = {"approve": "approving", "ignore": "ignoring", "resolve": "resolving"}[action]
    if not by or not by.strip():
        return ActionResult(
            exception_id,
            False,
            f"Say who is {verb} it (it is recorded).",
            action=action,  # type: ignore[arg-type]
            refused=True,
        )
    found = _records(audit, [exception_id])
    if not found:
        return ActionResult(
            exception_id,
            False,
            f"There is no exception {exception_id}.",
            action=action,  # type: ignore[arg-type]
            refused=True,
        )
    record = _labelled(found[0])
    if record["status"] not in WAITING:
        return _result(
            record,
            action,  # type: ignore[arg-type]
            ok=False,
            message=_closed(record),
            refused=True,
        )
    return record


def _closed(record: Mapping[str, Any]) -> str:
    who = record.get("resolved_by") or "someone"
    when = record.get("resolved_at") or record.get("updated_at")
    on = f" on {str(when)[:16]}" if when else ""
    if record["status"] == "ignored":
        return (
            f"{record['label']} was ignored by {who}{on}; it is closed and is not acted on again."
        )
    return f"{record['label']} was already resolved by {who}{on}; there is nothing left to do."


def _what_to_do(reason: str) -> str:
    from b2b_pipeline.domain.exceptions import REASONS

    known = REASONS.get(reason)
    return known.action if known else "See the exception's message for what to do."


def _retry_job(record: Mapping[str, Any]) -> str | None:
    entity = str(record["entity"])
    if entity == "order":
        return ORDER_JOB
    if entity == "sync" and record["reason_code"] in TRANSPORT_REASONS:
        return str(record["entity_key"])
    return RETRY_JOBS.get(entity)


def _audit_retry_requests(
    audit: AuditTrail, jobs: Mapping[str, list[dict[str, Any]]], by: str
) -> None:
    import pandas as pd

    rows = [
        {
            "run_id": None,
            "entity": "exception",
            "entity_key": record["exception_id"],
            "action": "exception_retry_requested",
            "category": record["category"],
            "detail": json.dumps(
                {
                    "by": by,
                    "job": job,
                    "entity": record["entity"],
                    "entity_key": record["entity_key"],
                    "reason_code": record["reason_code"],
                },
                sort_keys=True,
            ),
        }
        for job, group in jobs.items()
        for record in group
    ]
    audit.append_events(pd.DataFrame(rows))


def _after_retry(
    before: dict[str, Any],
    after: Mapping[str, Any],
    summary: RunSummary,
    job: str,
    waiting: pd.DataFrame,
) -> ActionResult:
    label = before["label"]
    run_id = summary.run_id
    if not summary.success:
        return _result(
            before,
            "retry",
            ok=False,
            message=f"{label} was not retried: the {job} run failed ({summary.error}). Nothing "
            "changed; retry again once the system is back.",
            run_id=run_id,
            failed=True,
        )
    status = after.get("status")
    if status == "resolved":
        done = "posted to the ERP" if before["entity"] == "order" else "went through"
        return _result(
            before, "retry", ok=True, message=f"{label} {done}.", status=status, run_id=run_id
        )
    others = waiting[
        (waiting["entity"] == before["entity"])
        & (waiting["entity_key"].astype(str) == str(before["entity_key"]))
        & (waiting["exception_id"] != before["exception_id"])
    ]
    if not others.empty:
        other = others.iloc[-1]
        message = (
            f"{label} is now held for another reason ({other['exception_id']}, "
            f"{other['category']} {other['reason_code']}): {other['message']}"
        )
    else:
        message = f"{label} is still waiting: {after.get('message') or before.get('message')}"
    return _result(before, "retry", ok=False, message=message, status=status, run_id=run_id)


def _result(
    record: Mapping[str, Any],
    action: Action,
    *,
    ok: bool,
    message: str,
    status: str | None = None,
    decision: dict[str, Any] | None = None,
    run_id: str | None = None,
    refused: bool = False,
    next_step: str | None = None,
    failed: bool = False,
) -> ActionResult:
    return ActionResult(
        exception_id=str(record["exception_id"]),
        ok=ok,
        message=message,
        action=action,
        status=status or record.get("status"),
        order_number=record.get("order_number"),
        decision=decision,
        run_id=run_id,
        refused=refused,
        next_step=next_step,
        failed=failed,
    )


def _map_company(portal: Portal, erp: Erp, record: Mapping[str, Any], account_code: str) -> str:
    """Point the order's portal company at the ERP account; returns a problem, or ''."""
    from b2b_pipeline.connectors.sparklayer.purchases import customer_id as purchase_customer

    customers = erp.read_customers()
    match = customers[customers["account_code"] == account_code]
    if match.empty:
        return (
            f"The ERP has no account {account_code}: check the code, or create the account first."
        )
    if not bool(match.iloc[0]["active"]):
        return f"ERP account {account_code} is inactive: reactivate it in the ERP first."
    try:
        payload = json.loads(record.get("payload") or "{}")
    except (TypeError, ValueError):
        payload = {}
    customer_id = purchase_customer(payload)
    if not customer_id:
        return f"{record['label']} names no portal company, so there is nothing to map."
    customer = portal.get_customer(customer_id, lookup_by="sparklayer")
    if customer is None:
        return f"The portal has no company {customer_id} any more."
    customer["accounting_id"] = account_code
    portal.put_customer(customer, lookup_by="sparklayer")
    return ""


# -- the pipeline's own actions: transport failures -------------------------------------------

_SYSTEMS = {
    "PORTAL_UNREACHABLE": "SparkLayer (the portal)",
    "ERP_UNREACHABLE": "the ERP database",
}


def file_transport_failure(
    audit: AuditTrail,
    alerts: Alerts,
    *,
    job: str,
    run_id: str,
    reason_code: str,
    detail: str,
) -> int:
    """Queue one TRANSPORT exception for a job whose run could not reach a system (kept as
    one while it lasts: a retried run failing again updates it) and alert when it is new.
    ``detail`` is the connector's own one-line message (it never carries a secret). Returns
    how many exceptions were new (0 or 1)."""
    import pandas as pd

    from b2b_pipeline.domain.exceptions import exception_frame

    if reason_code not in _SYSTEMS:
        raise ValueError(f"not a transport reason: {reason_code}")
    row = exception_frame(
        [
            {
                "entity": "sync",
                "entity_key": job,
                "account_code": None,
                "reason_code": reason_code,
                "message": f"The {job} run could not reach {_SYSTEMS[reason_code]} after "
                f"retries ({detail}). Nothing was lost: the next run picks up where the last "
                "success stopped. If this lasts more than an hour, check the system and its "
                "settings.",
                "payload": json.dumps({"run_id": run_id, "job": job}),
            }
        ]
    )
    opened = audit.open_exceptions(row, run_id)
    new = opened[opened["is_new"].astype(bool)] if "is_new" in opened else opened
    if not new.empty:
        alerts.send_digest(pd.DataFrame(new), run_label=f"{job} (failed)")
    return len(new)


def clear_transport_failure(audit: AuditTrail, *, job: str, run_id: str) -> int:
    """Resolve (by the pipeline) a job's TRANSPORT exception once that job succeeded again."""
    waiting = audit.exception_queue(statuses=list(WAITING), category="TRANSPORT")
    if waiting.empty or not (waiting["entity_key"] == job).any():
        return 0
    return audit.resolve_exceptions_for("sync", [job], run_id)
