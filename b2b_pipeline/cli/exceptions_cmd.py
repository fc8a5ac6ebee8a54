"""``b2b-pipeline exceptions``: the queue where exceptions wait to be approved, fixed, retried.

The rules of each action are in ``b2b_pipeline.flows.exception_actions`` (the web console calls
the same functions); this module turns options into a call and its result into a line a
person reads. Approving replays the same rules with the operator's explicit decision; nothing
bypasses them silently, and every decision lands in the audit trail with who made it.

An exception is named by its id (``EX-000012``), a unique start of it, or the order number the
buyer sees (``SL-100003``). ``--by`` defaults to the login name of whoever runs the command.

Exit status: 0 when the action happened (a retry after which the exception still waits
included: that is a business outcome, and the output says why); 2 when it was refused (the
reason is printed) or a retry's run failed.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import sys
from collections.abc import Iterator
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

import click

from b2b_pipeline.cli import paths
from b2b_pipeline.cli.output import emit, format_option, table, terminal_width

if TYPE_CHECKING:
    from b2b_pipeline.connectors.audit.store import AuditStore
    from b2b_pipeline.flows.exception_actions import ActionResult

STATUSES = ["open", "approved", "resolved", "ignored", "all"]
CATEGORIES = ["PRICING", "AUTHORISATION", "MAPPING", "DATA", "TRANSPORT"]


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (a container without a user entry): say so
        return "unknown user"


def _by_option(help_text: str):
    return click.option(
        "--by",
        "by",
        default=_login,
        show_default="your login name",
        help=help_text,
    )


def _store() -> AuditStore:
    from b2b_pipeline.connectors.audit.store import AuditStore

    return AuditStore(paths.require_audit_file())


def _find(store: AuditStore, reference: str) -> dict[str, Any]:
    from b2b_pipeline.flows.exception_actions import find_exception

    record = find_exception(store, reference)
    if not record:
        click.echo(f"b2b-pipeline: no exception {reference}", err=True)
        sys.exit(2)
    return record


def _age(hours: Any) -> str:
    if hours is None or hours != hours:  # NaN
        return ""
    hours = float(hours)
    if hours < 1:
        return f"{max(int(hours * 60), 0)} min"
    if hours < 48:
        return f"{hours:.0f} h"
    return f"{hours / 24:.0f} d"


def _report(results: list[ActionResult], fmt: str, *, heading: str | None = None) -> None:
    """Print what happened; exit 2 when anything was refused or a retry's run failed."""
    if fmt == "json":
        emit([asdict(r) for r in results], fmt)
    else:
        if heading:
            click.echo(heading)
        for result in results:
            stream_err = result.refused or result.failed
            prefix = "b2b-pipeline: " if stream_err else ("  " if heading else "")
            click.echo(f"{prefix}{result.message}", err=stream_err)
    if any(r.refused or r.failed for r in results):
        sys.exit(2)


@click.group()
def exceptions() -> None:
    """List, inspect, approve, retry, ignore or resolve exceptions."""


@exceptions.command("list")
@click.option(
    "--status",
    type=click.Choice(STATUSES, case_sensitive=False),
    default="open",
    show_default=True,
)
@click.option("--category", type=click.Choice(CATEGORIES, case_sensitive=False))
@click.option("--reason", help="a reason code, e.g. PRICE_MISMATCH")
@click.option("--account", help="an ERP account code")
@click.option("--wide", is_flag=True, help="one line per exception, messages unwrapped")
@format_option
def list_(
    status: str,
    category: str | None,
    reason: str | None,
    account: str | None,
    wide: bool,
    fmt: str,
) -> None:
    """The queue, oldest first, each message in full (wrapped to the terminal)."""
    from b2b_pipeline.flows.exception_actions import list_exceptions

    queue = list_exceptions(
        _store(),
        status=status.lower(),
        category=category,
        reason_code=reason,
        account_code=account,
    )
    if fmt == "json":
        emit(queue.drop(columns=["payload"], errors="ignore"), fmt)
        return
    if queue.empty:
        click.echo("(none)")
        return
    # The number the buyer sees for an order; the record's own key for anything else.
    order = queue["order_number"].where(queue["order_number"].notna(), queue["entity_key"])
    view = {
        "exception": queue["exception_id"],
        "order/record": order,
        "account": queue["account_code"],
        "category": queue["category"],
        "reason": queue["reason_code"],
        "age": queue["age_hours"].map(_age),
    }
    if status.lower() != "open":
        view["status"] = queue["status"]
    view["message"] = queue["message"]
    import pandas as pd

    frame = pd.DataFrame(view)
    click.echo(table(frame, wrap=None if wide else {"message": terminal_width()}))
    click.echo(f"\n{len(frame)} exception(s).")


@exceptions.command("show")
@click.argument("reference")
@format_option
def show(reference: str, fmt: str) -> None:
    """One exception in full: the record as received and every action taken on it."""
    store = _store()
    record = _find(store, reference)
    history = store.exception_history(record["exception_id"])
    if fmt == "json":
        emit({**record, "history": history.to_dict(orient="records")}, fmt)
        return
    for key, value in record.items():
        if key in ("payload", "label"):
            continue
        click.echo(f"{key}: {'' if value is None else value}")
    if record.get("payload"):
        value = record["payload"]
        with contextlib.suppress(TypeError, ValueError):  # show unreadable payloads as is
            value = json.dumps(json.loads(value), indent=2)
        click.echo(f"payload (as received):\n{value}")
    if not history.empty:
        click.echo("history:")
        for event in history.itertuples():
            detail = _history_detail(event.detail)
            click.echo(f"  {str(event.occurred_at)[:19]}  {event.action}{detail}")


def _history_detail(detail: Any) -> str:
    try:
        data = json.loads(detail or "{}")
    except (TypeError, ValueError):
        return ""
    parts = [f"by {data['by']}"] if data.get("by") else []
    for key in ("decision", "note", "job"):
        if data.get(key):
            parts.append(f"{key}: {data[key]}")
    return f" ({'; '.join(parts)})" if parts else ""


@contextlib.contextmanager
def _portal_and_erp() -> Iterator[tuple[Any, Any]]:
    """The portal and the ERP, for an approval that maps a company to an ERP account."""
    from b2b_pipeline.connectors.erp.gateway import ErpGateway
    from b2b_pipeline.connectors.sparklayer.client import SparkLayerClient

    current = paths.settings()
    gateway = ErpGateway(current.erp_database_url)
    try:
        with SparkLayerClient(
            current.sparklayer_base_url,
            current.sparklayer_site_id,
            current.sparklayer_client_id,
            current.sparklayer_client_secret,
        ) as client:
            yield client, gateway
    finally:
        gateway.dispose()


def _retry(store: AuditStore, ids: list[str], by: str) -> list[ActionResult]:
    from b2b_pipeline.cli.runner import run_retry  # Dagster only for commands that run a job
    from b2b_pipeline.flows.exception_actions import retry_exceptions

    click.echo(f"Retrying {len(ids)} exception(s) …", err=True)
    return retry_exceptions(store, ids, by=by, run_job=run_retry)


@exceptions.command("approve")
@click.argument("reference")
@_by_option("who approves (recorded in the audit trail)")
@click.option("--account-code", help="UNMAPPED/UNKNOWN_ACCOUNT: the ERP account to use")
@click.option(
    "--accept",
    type=click.Choice(["erp-price", "portal-price"], case_sensitive=False),
    help="PRICE_MISMATCH: post at the ERP's price or at the portal's price",
)
@click.option("--post-on-hold", is_flag=True, help="ACCOUNT_ON_HOLD: post the order ON_HOLD")
@click.option("--note", help="why (recorded)")
@click.option("--no-retry", is_flag=True, help="record the decision only; retry later")
@format_option
def approve(
    reference: str,
    by: str,
    account_code: str | None,
    accept: str | None,
    post_on_hold: bool,
    note: str | None,
    no_retry: bool,
    fmt: str,
) -> None:
    """Approve an exception with an explicit decision, then retry it."""
    from b2b_pipeline.flows.exception_actions import approve_exception, retry_summary

    store = _store()
    record = _find(store, reference)
    decision = {"accept": accept, "account_code": account_code, "post_on_hold": post_on_hold}
    with contextlib.ExitStack() as systems:
        portal = erp = None
        if account_code:
            portal, erp = systems.enter_context(_portal_and_erp())
        result = approve_exception(
            store,
            record["exception_id"],
            by=by,
            decision=decision,
            note=note,
            portal=portal,
            erp=erp,
        )
    if not result.ok or no_retry:
        if fmt != "json" and result.ok and result.next_step:
            result = replace(result, message=f"{result.message} {result.next_step}")
        _report([result], fmt)
        return
    retried = _retry(store, [result.exception_id], by)
    if fmt == "json":
        _report([result, *retried], fmt)
        return
    click.echo(result.message)
    _report(retried, fmt, heading=retry_summary(retried))


@exceptions.command("retry")
@click.argument("references", nargs=-1)
@click.option("--all-open", is_flag=True, help="retry every open or approved exception")
@_by_option("who retries (recorded in the audit trail)")
@format_option
def retry(references: tuple[str, ...], all_open: bool, by: str, fmt: str) -> None:
    """Replay every rule for these exceptions (orders in one run); a success resolves them."""
    from b2b_pipeline.flows.exception_actions import list_exceptions, retry_summary

    store = _store()
    if all_open:
        ids = list_exceptions(store, status=["open", "approved"])["exception_id"].tolist()
    elif references:
        ids = [_find(store, reference)["exception_id"] for reference in references]
    else:
        raise click.UsageError("name exception ids (or order numbers), or --all-open")
    if not ids:
        click.echo("Nothing to retry.")
        return
    results = _retry(store, ids, by)
    _report(results, fmt, heading=None if fmt == "json" else retry_summary(results))


@exceptions.command("ignore")
@click.argument("reference")
@_by_option("who decides (recorded)")
@click.option("--note", "--reason", "reason", required=True, help="why it needs no action")
@format_option
def ignore(reference: str, by: str, reason: str, fmt: str) -> None:
    """Close an exception that needs no action (e.g. the customer cancelled)."""
    from b2b_pipeline.flows.exception_actions import ignore_exception

    store = _store()
    record = _find(store, reference)
    _report([ignore_exception(store, record["exception_id"], by=by, reason=reason)], fmt)


@exceptions.command("resolve")
@click.argument("reference")
@_by_option("who resolved it (recorded)")
@click.option("--note", required=True, help="how it was dealt with outside the pipeline")
@format_option
def resolve(reference: str, by: str, note: str, fmt: str) -> None:
    """Mark an exception resolved because its cause was dealt with outside the pipeline (e.g.
    the order was keyed into the ERP by hand); nothing is replayed."""
    from b2b_pipeline.flows.exception_actions import resolve_exception

    store = _store()
    record = _find(store, reference)
    _report([resolve_exception(store, record["exception_id"], by=by, note=note)], fmt)
