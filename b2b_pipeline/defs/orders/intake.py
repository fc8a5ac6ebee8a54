"""Portal → ERP order intake: collect purchases, apply the order rules, post, queue, advance.

The business rules are in ``b2b_pipeline.domain.orders``; this module only moves data between
the systems, in the order that makes a crash at any point safe:

1. collect the purchase versions not yet handled (durable cursor minus a look-back window, and a
   per-purchase version check, so a purchase seen in two polls is handled once);
2. decide every order with the rules (pure, vectorised);
3. post the approved orders to the ERP in one transaction (``external_ref`` is UNIQUE, so a rerun
   finds them ``already_posted`` instead of posting twice) and queue the exceptions;
4. record the outcome per purchase, then advance the cursor: only after 3 is durable;
5. write the ERP order number back to the portal (``purchase_identifiers.internal``); a failure
   there is retried on the next run, never a reason to re-post.

Steps 3 and 4 are several transactions (the ERP, then the audit file: postings, exceptions,
events, tracking), so the ERP, not the audit file, is the source of idempotency. A run that dies
anywhere after the ERP commit leaves the purchase untracked or the cursor behind it, so the next
run sees it again, finds it in the ERP (``already_posted``), and repairs what the dead run did not
finish: the posting record (from the ERP's own row), the tracking row with the ERP number (so it
is still written back) and any exception left open for it. A run that dies before the ERP commit
posted nothing. Exceptions are deduplicated by the queue, so a re-seen order is never queued
twice. Orders an operator ignored are never decided again (the decision stands).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import timedelta

import pandas as pd

from b2b_pipeline.connectors.sparklayer import purchases as wire
from b2b_pipeline.connectors.sparklayer.errors import (
    ConflictError,
    ForbiddenError,
    InvalidRequestError,
)
from b2b_pipeline.defs.systems import Systems, audit_events
from b2b_pipeline.domain.exceptions import exception_frame

log = logging.getLogger(__name__)

# Purchases whose clock was slightly behind others still get picked up.
DEFAULT_LOOKBACK = timedelta(minutes=5)
# One run handles a batch, never one run per order; the sensor asks for another run if more wait.
DEFAULT_MAX_ORDERS_PER_RUN = 5000


NEVER = pd.Timestamp.min.tz_localize("UTC")


def purchase_updated_at(purchase: object) -> pd.Timestamp:
    """When the portal last changed the purchase; an unreadable time sorts first."""
    moment = wire.purchase_updated_at(purchase)
    return NEVER if moment is None else moment


def _id(purchase: object) -> str | None:
    return wire.purchase_id(purchase)


def collect_purchases(
    systems: Systems,
    *,
    purchase_ids: list[str] | None = None,
    lookback: timedelta = DEFAULT_LOOKBACK,
    max_orders: int = DEFAULT_MAX_ORDERS_PER_RUN,
) -> list[dict]:
    """The purchase versions this run must handle, oldest first.

    With ``purchase_ids`` (an operator's retry) exactly those purchases are re-read and replayed,
    whatever was decided before.
    """
    if purchase_ids:
        found = [systems.portal.get_purchase(pid) for pid in purchase_ids]
        return [p for p in found if p is not None]

    cursor = systems.state.order_cursor()
    since = cursor.updated_at - lookback if cursor.updated_at is not None else None
    since_ts = pd.Timestamp(since) if since is not None else None
    batch: list[dict] = []
    # The client pages the newest-first list so that nothing inside the window is missed, even
    # while buyers add and change purchases (see SparkLayerClient.iter_purchases); the window's
    # lower edge is the durable cursor minus the look-back.
    for purchase in systems.portal.iter_purchases(updated_gte=since):
        # A server that ignores the filter still pages everything: filter here too. An entry
        # with no readable time stays in: the rules queue it as malformed.
        updated = wire.purchase_updated_at(purchase)
        if since_ts is not None and updated is not None and updated < since_ts:
            continue
        batch.append(purchase)
    if not batch:
        return []
    ids = [pid for pid in map(_id, batch) if pid is not None]
    tracked = systems.state.tracked_versions(ids)
    handled = dict(zip(tracked["portal_order_id"], tracked["portal_updated_at"], strict=True))
    fresh = [
        p
        for p in batch
        if _id(p) is None
        or handled.get(_id(p)) is None
        or purchase_updated_at(p) > pd.Timestamp(handled[_id(p)])
    ]
    fresh.sort(key=lambda p: (purchase_updated_at(p), _id(p) or ""))
    return fresh[:max_orders]


@dataclass
class OrderOutcome:
    """What one batch did, for run metadata, alerts and the cursor."""

    counts: dict[str, int] = field(default_factory=dict)
    posted: pd.DataFrame = field(default_factory=pd.DataFrame)
    new_exceptions: pd.DataFrame = field(default_factory=pd.DataFrame)
    tracking: pd.DataFrame = field(default_factory=pd.DataFrame)


def _portal_customers(systems: Systems) -> pd.DataFrame:
    rows = [
        {
            "id": c.get("id"),
            "accounting_id": c.get("accounting_id"),
            "company_name": c.get("company_name"),
            "tax_exempt": c.get("tax_exempt"),
            "external_id": c.get("external_id"),
        }
        for c in systems.portal.iter_customers()
    ]
    return pd.DataFrame(
        rows, columns=["id", "accounting_id", "company_name", "tax_exempt", "external_id"]
    )


def _erp_snapshot(systems: Systems):
    from b2b_pipeline.domain.orders import ErpSnapshot

    erp = systems.erp
    return ErpSnapshot(
        customers=erp.read_customers(),
        products=erp.read_products(),
        tax_codes=erp.read_tax_codes(),
        price_lists=erp.read_price_lists(),
        price_list_items=erp.read_price_list_items(),
    )


def approved_overrides(systems: Systems, order_ids: list[str]) -> pd.DataFrame:
    """Decisions operators took on approved exceptions of these orders (replayed by the rules)."""
    approved = systems.audit.exceptions(status="approved")
    if approved.empty:
        return pd.DataFrame(columns=["portal_order_id", "decision"])
    approved = approved[(approved["entity"] == "order") & approved["entity_key"].isin(order_ids)]
    decisions = approved["decision"].map(
        lambda d: json.loads(d) if isinstance(d, str) and d else (d or {})
    )
    return pd.DataFrame(
        {"portal_order_id": approved["entity_key"].to_numpy(), "decision": decisions.to_numpy()}
    )


def ignored_orders(systems: Systems, order_ids: list[str]) -> set[str]:
    """Orders a person closed with ``exceptions ignore`` and that wait for nothing else.

    The runbook promises an ignored order is never posted: a later poll (the purchase changed,
    or the cause went away, e.g. a hold released) must not post it behind that decision's back.
    """
    queue = systems.audit.exceptions(status=["ignored", "open", "approved"])
    if queue.empty:
        return set()
    mine = queue[(queue["entity"] == "order") & queue["entity_key"].astype(str).isin(order_ids)]
    ignored = set(mine.loc[mine["status"] == "ignored", "entity_key"].astype(str))
    waiting = set(mine.loc[mine["status"] != "ignored", "entity_key"].astype(str))
    return ignored - waiting


@dataclass
class ValidatedBatch:
    """A batch after the order rules: what to post, what to queue, what was filtered."""

    purchases: list[dict]
    normalised: object  # domain.orders.NormalisedOrders
    decisions: object  # domain.orders.OrderDecisions
    existing: pd.DataFrame  # ERP orders already posted for these purchases (external_ref, order_no)
    ignored: set[str] = field(default_factory=set)  # closed by a person; not decided again


def validate_purchases(systems: Systems, purchases: list[dict]) -> ValidatedBatch:
    """Apply every order rule (pure, vectorised) against the ERP's current records."""
    from b2b_pipeline.domain.orders import decide_orders, normalise_purchases

    ignored = ignored_orders(systems, [pid for pid in map(_id, purchases) if pid is not None])
    decided = [p for p in purchases if _id(p) not in ignored]
    normalised = normalise_purchases(wire.read_purchases(decided), _portal_customers(systems))
    _mark_paid_by_transactions(systems, normalised.orders)
    orders = normalised.orders
    order_ids = orders["portal_order_id"].astype(str).tolist()
    existing = systems.erp.existing_orders(order_ids)
    decisions = decide_orders(
        orders,
        normalised.lines,
        _erp_snapshot(systems),
        systems.mappings,
        posted_refs=set(existing["external_ref"].astype(str)),
        overrides=approved_overrides(systems, order_ids),
    )
    return ValidatedBatch(
        purchases=purchases,
        normalised=normalised,
        decisions=decisions,
        existing=existing,
        ignored=ignored,
    )


def _mark_paid_by_transactions(systems: Systems, orders: pd.DataFrame) -> None:
    """Set ``paid`` for the orders whose ERP status would be PAID but that were not paid at
    checkout: paid means the transactions applied to the balance cover the checkout total.

    Only those orders cost an extra call (the transactions endpoint); Pay on Account and Pay by
    Invoice orders are invoiced later and never need it.
    """
    status = orders["payment_method"].map(systems.mappings.payment_methods)
    wanted = orders.index[(status == "PAID") & ~orders["paid"]]
    for index in wanted:
        transactions = systems.portal.list_purchase_transactions(
            str(orders.at[index, "portal_order_id"])
        )
        covered = wire.applied_total(transactions) + 0.005 >= orders.at[index, "portal_gross"]
        orders.at[index, "paid"] = bool(covered)


def apply_decisions(systems: Systems, batch: ValidatedBatch) -> OrderOutcome:
    """Post the approved orders, queue the exceptions, record every outcome."""
    purchases = batch.purchases
    if not purchases:
        return OrderOutcome(counts={"received": 0})
    run_id = systems.run_id
    normalised, decisions = batch.normalised, batch.decisions
    orders = normalised.orders

    events: list[pd.DataFrame] = []
    accounts = decisions.accounts_to_create
    if accounts is not None and not accounts.empty:
        for record in accounts.to_dict(orient="records"):
            systems.erp.create_customer(record)
        events.append(
            audit_events(
                accounts,
                run_id=run_id,
                entity="customer",
                key="account_code",
                action="account_auto_created",
                detail_columns=list(accounts.columns),
            )
        )

    posted = systems.erp.post_sales_orders(decisions.to_post, decisions.to_post_lines)
    if accounts is not None and not accounts.empty:
        _map_auto_created_accounts(systems, accounts, decisions.to_post, orders)
    if not posted.empty:
        posted = posted.merge(
            decisions.to_post, on="external_ref", how="left", suffixes=("", "_decided")
        ).merge(
            orders[["portal_order_id", "visible_id", "portal_gross"]],
            left_on="external_ref",
            right_on="portal_order_id",
            how="left",
        )
        posted["action"] = posted["already_posted"].map({True: "already_posted", False: "posted"})
        events.append(
            audit_events(
                posted,
                run_id=run_id,
                entity="order",
                key="external_ref",
                action=posted["action"],
                detail_columns=[
                    "order_no",
                    "account_code",
                    "status",
                    "gross_total",
                    "portal_gross",
                    "currency",
                    "po_number",
                    "payment_method",
                ],
            )
        )
        systems.audit.record_order_postings(
            pd.DataFrame(
                {
                    "portal_order_id": posted["external_ref"].astype(str),
                    "erp_order_no": posted["order_no"].astype(str),
                    "account_code": posted["account_code"],
                    "currency": posted["currency"],
                    "portal_gross": posted["portal_gross"].astype(float),
                    "erp_gross": posted["gross_total"].astype(float),
                    "payment_method": posted["payment_method"],
                    "erp_status": posted["status"],
                }
            ),
            run_id,
        )
        systems.audit.resolve_exceptions_for(
            "order", posted["external_ref"].astype(str).tolist(), run_id
        )

    already = decisions.already_posted
    if already is not None and not already.empty:
        events.append(
            audit_events(
                already,
                run_id=run_id,
                entity="order",
                key="portal_order_id",
                action="already_posted",
            )
        )
        _record_missing_postings(systems, already, batch.existing, orders)
    filtered = decisions.filtered
    if not filtered.empty:
        events.append(
            audit_events(
                filtered,
                run_id=run_id,
                entity="order",
                key="portal_order_id",
                action="filtered",
                detail_columns=["type", "reason"],
            )
        )

    all_exceptions = pd.concat(
        [exception_frame(normalised.malformed), exception_frame(decisions.exceptions)],
        ignore_index=True,
    )
    _resolve_superseded(systems, orders, all_exceptions)
    opened = (
        systems.audit.open_exceptions(all_exceptions, run_id)
        if not all_exceptions.empty
        else all_exceptions.assign(exception_id=None, is_new=False)
    )
    if batch.ignored:
        events.append(
            audit_events(
                pd.DataFrame({"portal_order_id": sorted(batch.ignored)}),
                run_id=run_id,
                entity="order",
                key="portal_order_id",
                action="ignored_by_decision",
            )
        )
    systems.record(events)

    tracking = _tracking_rows(
        purchases, orders, decisions, posted, all_exceptions, batch.existing, batch.ignored
    )
    systems.state.track_orders(tracking, run_id)

    counts = {"received": len(purchases), **decisions.counts()}
    counts["malformed"] = len(normalised.malformed)
    counts["posted"] = int((~posted["already_posted"]).sum()) if not posted.empty else 0
    counts["already_posted"] = (int(posted["already_posted"].sum()) if not posted.empty else 0) + (
        0 if already is None else len(already)
    )
    counts["exceptions"] = len(all_exceptions)
    counts["ignored"] = len(batch.ignored)
    new_exceptions = opened[opened["is_new"]] if "is_new" in opened else opened
    return OrderOutcome(
        counts=counts, posted=posted, new_exceptions=new_exceptions, tracking=tracking
    )


def _record_missing_postings(
    systems: Systems, already: pd.DataFrame, existing: pd.DataFrame, orders: pd.DataFrame
) -> None:
    """Record, from the ERP, the postings of orders the ERP has but the audit store does not.

    That happens when a run died between the ERP commit and the audit write: the next run finds
    the order ``already_posted`` and must not leave it missing from ``v_order_postings`` (the
    finance view and the totals check read it). Orders already recorded are left untouched.
    """
    ids = already["portal_order_id"].astype(str).tolist()
    missing = set(ids) - systems.audit.posted_order_ids(ids)
    if not missing or existing.empty:
        return
    erp = existing.assign(external_ref=existing["external_ref"].astype(str))
    erp = erp[erp["external_ref"].isin(missing)].drop_duplicates("external_ref")
    portal_gross = orders.set_index(orders["portal_order_id"].astype(str))["portal_gross"]
    systems.audit.record_order_postings(
        pd.DataFrame(
            {
                "portal_order_id": erp["external_ref"],
                "erp_order_no": erp["order_no"].astype(str),
                "account_code": erp["account_code"],
                "currency": erp["currency"],
                "portal_gross": erp["external_ref"].map(portal_gross).astype(float),
                "erp_gross": erp["gross_total"].astype(float),
                "payment_method": erp["payment_method"],
                "erp_status": erp["status"],
            }
        ),
        systems.run_id,
    )


def _map_auto_created_accounts(
    systems: Systems, accounts: pd.DataFrame, to_post: pd.DataFrame, orders: pd.DataFrame
) -> None:
    """Write each auto-created ERP account code onto its portal company (``accounting_id``),
    so the customer sync updates that company instead of creating a second one. A failure here
    is harmless for orders (the code is derived deterministically) and the next run retries."""
    ordered = to_post.loc[to_post["account_code"].isin(accounts["account_code"])].merge(
        orders[["portal_order_id", "customer_sparklayer_id"]],
        left_on="external_ref",
        right_on="portal_order_id",
    )
    pairs = ordered.drop_duplicates("customer_sparklayer_id")
    for customer_id, account_code in zip(
        pairs["customer_sparklayer_id"], pairs["account_code"], strict=True
    ):
        try:
            customer = systems.portal.get_customer(customer_id, lookup_by="sparklayer")
            if customer is not None and customer.get("accounting_id") != account_code:
                customer["accounting_id"] = account_code
                systems.portal.put_customer(customer, lookup_by="sparklayer")
        except Exception as exc:  # the order is posted; the mapping is retried next time
            log.warning(
                "portal company %s not yet mapped to %s (%s)",
                customer_id,
                account_code,
                type(exc).__name__,
            )


def _resolve_superseded(systems: Systems, orders: pd.DataFrame, exceptions: pd.DataFrame) -> None:
    """An order has at most one exception at a time: when a replay stops at a different rule
    (or the order now passes, or is no longer live), the old exception is resolved, so the
    queue shows only what still needs someone."""
    queue = systems.audit.exceptions(status=["open", "approved"])
    if queue.empty:
        return
    handled = set(orders["portal_order_id"].astype(str))
    current = set(zip(exceptions["entity_key"].astype(str), exceptions["reason_code"], strict=True))
    mine = queue[(queue["entity"] == "order") & queue["entity_key"].astype(str).isin(handled)]
    stale = [
        key
        for key, reason in zip(mine["entity_key"].astype(str), mine["reason_code"], strict=True)
        if (key, reason) not in current
    ]
    if stale:
        systems.audit.resolve_exceptions_for("order", stale, systems.run_id)


def _tracking_rows(
    purchases: list[dict],
    orders: pd.DataFrame,
    decisions,
    posted: pd.DataFrame,
    exceptions: pd.DataFrame,
    existing: pd.DataFrame,
    ignored: set[str] | None = None,
) -> pd.DataFrame:
    """One row per purchase handled: its version and outcome (for conservation and re-polls)."""
    # An entry with no id cannot be tracked; its exception (keyed by its content) holds it.
    identified = [p for p in purchases if _id(p) is not None]
    base = pd.DataFrame(
        {
            "portal_order_id": [_id(p) for p in identified],
            "portal_updated_at": [purchase_updated_at(p) for p in identified],
            "purchase_type": [wire.purchase_type(p) for p in identified],
            "cancelled": [wire.is_cancelled(p) for p in identified],
            "visible_id": [wire.visible_id(p) for p in identified],
        },
    ).drop_duplicates("portal_order_id", keep="last")
    accounts = orders.set_index(orders["portal_order_id"].astype(str))["accounting_id"]
    base["account_code"] = base["portal_order_id"].map(accounts)
    base["outcome"] = None
    base["erp_order_no"] = None
    base["reason_code"] = None
    if not decisions.filtered.empty:
        base.loc[
            base["portal_order_id"].isin(decisions.filtered["portal_order_id"].astype(str)),
            "outcome",
        ] = "filtered"
    if not exceptions.empty:
        reasons = exceptions.drop_duplicates("entity_key").set_index("entity_key")["reason_code"]
        hit = base["portal_order_id"].isin(reasons.index)
        base.loc[hit, "outcome"] = "exception"
        base.loc[hit, "reason_code"] = base.loc[hit, "portal_order_id"].map(reasons)
    if not posted.empty:
        numbers = posted.set_index(posted["external_ref"].astype(str))["order_no"].astype(str)
        hit = base["portal_order_id"].isin(numbers.index)
        base.loc[hit, "outcome"] = "posted"
        base.loc[hit, "erp_order_no"] = base.loc[hit, "portal_order_id"].map(numbers)
        base.loc[hit, "reason_code"] = None
    already = decisions.already_posted
    if already is not None and not already.empty:
        hit = base["portal_order_id"].isin(already["portal_order_id"].astype(str))
        base.loc[hit, "outcome"] = "posted"
        base.loc[hit, "reason_code"] = None
        # The ERP's number, so that an order whose run died before writing it back to the
        # portal still gets it written back (tracking keeps an earlier number if it had one).
        if not existing.empty:
            numbers = existing.set_index(existing["external_ref"].astype(str))["order_no"]
            numbers = numbers[~numbers.index.duplicated()].astype(str)
            base.loc[hit, "erp_order_no"] = base.loc[hit, "portal_order_id"].map(numbers)
    if ignored:
        base.loc[base["portal_order_id"].isin(ignored), "outcome"] = "ignored"
    base["outcome"] = base["outcome"].fillna("filtered")
    return base


def advance_cursor(systems: Systems, purchases: list[dict]) -> None:
    """Move the durable cursor to the newest purchase handled (after its outcome is durable)."""
    dated = [p for p in purchases if _id(p) is not None and wire.purchase_updated_at(p)]
    if not dated:
        return
    newest = max(dated, key=lambda p: (purchase_updated_at(p), _id(p) or ""))
    systems.state.advance_order_cursor(
        purchase_updated_at(newest).to_pydatetime(), str(_id(newest)), systems.run_id
    )


def write_back_order_numbers(systems: Systems, limit: int = 5000) -> dict[str, int]:
    """Write ERP order numbers into the portal purchases; failures wait for the next run."""
    pending = systems.state.orders_awaiting_write_back(limit)
    written, failed = [], []
    refused: list[dict] = []
    for row in pending.itertuples(index=False):  # one API call per order: the API has no batch
        try:
            purchase = systems.portal.set_internal_identifier(
                row.portal_order_id, str(row.erp_order_no)
            )
        except (InvalidRequestError, ForbiddenError, ConflictError) as exc:
            if isinstance(exc, ConflictError) and not exc.already_exists:
                # Kept changing under us (buyers editing): the next run tries again.
                log.warning("order %s: write-back conflicted, retried", row.portal_order_id)
                failed.append(row.portal_order_id)
                continue
            # The portal will refuse the same body again (or another purchase already carries
            # this ERP number): a person must look at the order.
            refused.append(_write_back_refusal(row, exc))
            failed.append(row.portal_order_id)
            continue
        except Exception as exc:  # retried on the next run; posting itself is already durable
            log.warning(
                "order %s: ERP number not written back yet (%s)",
                row.portal_order_id,
                type(exc).__name__,
            )
            failed.append(row.portal_order_id)
            continue
        written.append(
            {
                "portal_order_id": row.portal_order_id,
                "portal_updated_at": purchase_updated_at(purchase or {}),
            }
        )
    frame = pd.DataFrame(written, columns=["portal_order_id", "portal_updated_at"])
    systems.state.mark_internal_written(frame)
    if refused:
        systems.audit.open_exceptions(exception_frame(refused), systems.run_id)
    if written:
        # A refusal fixed in the portal closes itself once the number is written.
        systems.audit.resolve_exceptions_for(
            "order", frame["portal_order_id"].tolist(), systems.run_id
        )
    systems.record(
        audit_events(
            frame,
            run_id=systems.run_id,
            entity="order",
            key="portal_order_id",
            action="erp_number_written_back",
        )
    )
    return {
        "written_back": len(written),
        "write_back_pending": len(failed),
        "write_back_refused": len(refused),
    }


def _write_back_refusal(row, error: Exception) -> dict:
    """A WRITE_BACK_REFUSED exception row for an order the portal would not update."""
    reason = getattr(error, "detail", None) or getattr(error, "title", None) or str(error)
    # The number the buyer and customer service see first; the portal id to find it by.
    label = f"{row.visible_id} ({row.portal_order_id})" if row.visible_id else row.portal_order_id
    return {
        "entity": "order",
        "entity_key": row.portal_order_id,
        "reason_code": "WRITE_BACK_REFUSED",
        "message": (
            f"Order {label} is in the ERP as order {row.erp_order_no}, but the "
            f"portal refused to record that number on it ({reason}). Nothing is posted twice; "
            "correct the order in the portal, then retry it to write the number back."
        ),
    }
