"""``b2b-pipeline exceptions``: the queue where exceptions wait to be approved, fixed, retried.

Approving replays the same rules with the operator's explicit decision; nothing bypasses them
silently, and every decision lands in the audit trail with who made it.
"""

from __future__ import annotations

import contextlib
import json
import sys

import click

from b2b_pipeline.cli.output import emit, format_option
from b2b_pipeline.config.settings import Settings

STATUSES = ["open", "approved", "resolved", "ignored", "all"]
# Which job replays an exception of each entity.
RETRY_JOBS = {
    "customer": "customer_sync_job",
    "customer_group": "customer_sync_job",
    "price_list": "price_sync_job",
    # A portal price that differs from the ERP's is re-probed (a fix closes it); the repair
    # itself is the price sync's full comparison (runbook).
    "customer_price": "price_probe_job",
    "inventory": "inventory_sync_job",
}


def _store():
    from b2b_pipeline.connectors.audit.store import AuditStore

    return AuditStore(Settings.from_env().audit_db)


def _get(store, exception_id: str) -> dict:
    record = store.exception(exception_id)
    if record is None:
        # Accept a unique prefix, as people copy the first characters of an id.
        queue = store.exceptions()
        hits = queue[queue["exception_id"].astype(str).str.startswith(exception_id)]
        if len(hits) == 1:
            record = store.exception(str(hits.iloc[0]["exception_id"]))
    if record is None:
        click.echo(f"b2b-pipeline: no exception {exception_id}", err=True)
        sys.exit(2)
    return record


@click.group()
def exceptions() -> None:
    """List, inspect, approve, retry or ignore exceptions."""


@exceptions.command("list")
@click.option("--status", type=click.Choice(STATUSES), default="open", show_default=True)
@click.option(
    "--category",
    type=click.Choice(["PRICING", "AUTHORISATION", "MAPPING", "DATA", "TRANSPORT"]),
)
@format_option
def list_(status: str, category: str | None, fmt: str) -> None:
    """The queue, oldest first."""
    queue = _store().exceptions(status=None if status == "all" else status, category=category)
    if fmt == "json":
        emit(queue.drop(columns=["payload"], errors="ignore"), fmt)
        return
    columns = [
        "exception_id",
        "category",
        "reason_code",
        "entity_key",
        "account_code",
        "status",
        "opened_at",
        "message",
    ]
    view = queue[[c for c in columns if c in queue.columns]].copy()
    if not view.empty:
        view["entity_key"] = view["entity_key"].astype(str).str[:12]
        view["message"] = view["message"].astype(str).str.slice(0, 90)
    emit(view, fmt)


@exceptions.command("show")
@click.argument("exception_id")
@format_option
def show(exception_id: str, fmt: str) -> None:
    """One exception in full, with the record as received."""
    record = _get(_store(), exception_id)
    if fmt == "json":
        emit(record, fmt)
        return
    for key, value in record.items():
        if key == "payload" and value:
            with contextlib.suppress(TypeError, ValueError):  # show unreadable payloads as is
                value = json.dumps(json.loads(value), indent=2)
        click.echo(f"{key}: {value}")


def _retry(store, records: list[dict]) -> tuple[int, int]:
    """Replay the records' flows; returns (resolved, still_open)."""
    from b2b_pipeline.cli.runner import run_job

    orders = [r["entity_key"] for r in records if r["entity"] == "order"]
    jobs = sorted({RETRY_JOBS[r["entity"]] for r in records if r["entity"] in RETRY_JOBS})
    if orders:
        summary = run_job(
            "order_intake_job",
            {"ops": {"portal_orders": {"config": {"purchase_ids": orders}}}},
        )
        if not summary.success:
            click.echo(f"b2b-pipeline: the retry failed: {summary.error}", err=True)
            sys.exit(2)
    for job in jobs:
        summary = run_job(job)
        if not summary.success:
            click.echo(f"b2b-pipeline: the retry failed: {summary.error}", err=True)
            sys.exit(2)
    ids = [r["exception_id"] for r in records]
    after = store.exceptions()
    after = after[after["exception_id"].isin(ids)]
    resolved = int((after["status"] == "resolved").sum())
    return resolved, len(ids) - resolved


def _report_retry(store, records: list[dict]) -> None:
    resolved, still = _retry(store, records)
    click.echo(f"Retried {len(records)}: {resolved} resolved, {still} still waiting.")
    if still:
        queue = store.exceptions(status=["open", "approved"])
        for record in records:
            # The same record may have been reopened with a new reason by the replay.
            newer = queue[queue["entity_key"] == record["entity_key"]]
            for row in newer.itertuples():
                click.echo(f"  {row.exception_id} [{row.category}] {row.message}")


@exceptions.command("approve")
@click.argument("exception_id")
@click.option("--by", "by", required=True, help="who approves (recorded in the audit trail)")
@click.option("--account-code", help="UNMAPPED/UNKNOWN_ACCOUNT: the ERP account to use")
@click.option(
    "--accept",
    type=click.Choice(["erp-price", "portal-price"]),
    help="PRICE_MISMATCH: post at the ERP's price or at the portal's price",
)
@click.option("--post-on-hold", is_flag=True, help="ACCOUNT_ON_HOLD: post the order ON_HOLD")
@click.option("--note", help="why (recorded)")
@click.option("--no-retry", is_flag=True, help="record the decision only; retry later")
def approve(
    exception_id: str,
    by: str,
    account_code: str | None,
    accept: str | None,
    post_on_hold: bool,
    note: str | None,
    no_retry: bool,
) -> None:
    """Approve an exception with an explicit decision, then retry it."""
    store = _store()
    record = _get(store, exception_id)
    if record["status"] not in ("open", "approved"):
        click.echo(f"b2b-pipeline: exception is {record['status']}, not open", err=True)
        sys.exit(2)
    reason = record["reason_code"]
    decision: dict = {}
    if reason in ("UNMAPPED_ACCOUNT", "UNKNOWN_ACCOUNT"):
        if not account_code:
            raise click.UsageError(f"{reason} needs --account-code (the ERP account to use)")
        _map_company(record, account_code)
        decision = {"account_code": account_code}
    elif reason == "PRICE_MISMATCH":
        if not accept:
            raise click.UsageError("PRICE_MISMATCH needs --accept erp-price or portal-price")
        decision = {"accept": accept.replace("-", "_")}
    elif reason == "ACCOUNT_ON_HOLD":
        if not post_on_hold:
            raise click.UsageError(
                "ACCOUNT_ON_HOLD: release the hold in the ERP and use `retry`, or approve with "
                "--post-on-hold to post the order ON_HOLD"
            )
        decision = {"post_on_hold": True}
    else:
        raise click.UsageError(
            f"{reason} is approved by fixing its cause (see `exceptions show`), then `retry`"
        )
    store.set_exception_status(
        record["exception_id"], "approved", by=by, note=note, decision=decision
    )
    click.echo(f"Approved {record['exception_id']} ({reason}) by {by}: {decision}")
    if not no_retry:
        _report_retry(store, [store.exception(record["exception_id"])])


def _map_company(record: dict, account_code: str) -> None:
    """Write the ERP account code onto the portal company (its accounting_id)."""
    from b2b_pipeline.connectors.erp.gateway import ErpGateway
    from b2b_pipeline.connectors.sparklayer.client import SparkLayerClient

    settings = Settings.from_env()
    gateway = ErpGateway(settings.erp_database_url)
    try:
        customers = gateway.read_customers()
    finally:
        gateway.dispose()
    match = customers[customers["account_code"] == account_code]
    if match.empty:
        raise click.UsageError(f"the ERP has no account {account_code}")
    if not bool(match.iloc[0]["active"]):
        raise click.UsageError(f"ERP account {account_code} is inactive")
    from b2b_pipeline.connectors.sparklayer.purchases import customer_id as purchase_customer

    customer_id = purchase_customer(json.loads(record["payload"] or "{}"))
    if not customer_id:
        raise click.UsageError("the exception's order names no portal customer")
    with SparkLayerClient(
        settings.sparklayer_base_url,
        settings.sparklayer_site_id,
        settings.sparklayer_client_id,
        settings.sparklayer_client_secret,
    ) as client:
        customer = client.get_customer(customer_id, lookup_by="sparklayer")
        if customer is None:
            raise click.UsageError(f"the portal has no customer {customer_id}")
        customer["accounting_id"] = account_code
        client.put_customer(customer, lookup_by="sparklayer")


@exceptions.command("retry")
@click.argument("exception_ids", nargs=-1)
@click.option("--all-open", is_flag=True, help="retry every open or approved exception")
def retry(exception_ids: tuple[str, ...], all_open: bool) -> None:
    """Replay every rule for these exceptions; a success resolves them."""
    store = _store()
    if all_open:
        queue = store.exceptions(status=["open", "approved"])
        records = queue.to_dict(orient="records")
    elif exception_ids:
        records = [_get(store, eid) for eid in exception_ids]
    else:
        raise click.UsageError("name exception ids, or --all-open")
    closed = [r for r in records if r["status"] == "ignored"]
    if closed:
        # An ignored order is never posted (the intake skips it); say so rather than replaying
        # it and reporting "still waiting" for something nobody waits for.
        for record in closed:
            click.echo(
                f"b2b-pipeline: {record['exception_id']} was ignored by "
                f"{record.get('resolved_by') or 'someone'}; it is closed and is not retried.",
                err=True,
            )
        sys.exit(2)
    if not records:
        click.echo("Nothing to retry.")
        return
    _report_retry(store, records)


@exceptions.command("ignore")
@click.argument("exception_id")
@click.option("--by", "by", required=True, help="who decides (recorded)")
@click.option("--note", required=True, help="why it needs no action (recorded)")
def ignore(exception_id: str, by: str, note: str) -> None:
    """Close an exception that needs no action (e.g. the customer cancelled)."""
    store = _store()
    record = _get(store, exception_id)
    if record["status"] not in ("open", "approved"):
        # A resolved exception's order is already in the ERP: ignoring it would record a
        # decision that did not happen.
        click.echo(f"b2b-pipeline: exception is {record['status']}, not open", err=True)
        sys.exit(2)
    store.set_exception_status(record["exception_id"], "ignored", by=by, note=note)
    click.echo(f"Ignored {record['exception_id']} by {by}.")
