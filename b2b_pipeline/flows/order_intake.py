"""Portal → ERP order intake, as one use case: collect, decide, post, advance, alert, write back.

The business rules are in ``b2b_pipeline.domain.orders``; this module only moves data between
the systems (the ports of ``flows/ports.py``), in the order that makes a crash at any point
safe. It is the contract of the order path, and :func:`run_order_intake` runs it:

1. collect the purchase versions not yet handled (durable cursor minus a look-back window, and a
   per-purchase version check, so a purchase seen in two polls is handled once), or exactly the
   purchases an operator retries;
2. decide every order with the rules (pure, vectorised);
3. post the approved orders to the ERP in one transaction (``external_ref`` is UNIQUE, so a rerun
   finds them ``already_posted`` instead of posting twice) and queue the exceptions;
4. record the outcome per purchase, then advance the cursor: only after 3 is durable (never for
   an operator's retry of old purchases, which must not move it back or on);
5. send one alert digest for the exceptions this run opened (and audit whether it went out),
   before the write-back, which costs one portal call per order: people hear of a problem
   without waiting for it;
6. write the ERP order number back to the portal (``purchase_identifiers.internal``); a failure
   there is retried on the next run, never a reason to re-post.

Steps 3 and 4 are several transactions (the ERP, then the audit file: postings, exceptions,
events, tracking), so the ERP, not the audit file, is the source of idempotency. A run that dies
anywhere after the ERP commit leaves the purchase untracked or the cursor behind it, so the next
run sees it again, finds it in the ERP (``already_posted``), and repairs what the dead run did not
finish: the posting record (from the ERP's own row), the tracking row with the ERP number (so it
is still written back) and any exception left open for it. A run that dies before the ERP commit
posted nothing. Exceptions are deduplicated by the queue, so a re-seen order is never queued
twice. Orders an operator ignored are never decided again (the decision stands).

**The window.** A run reads the purchases changed since the durable cursor minus the look-back.
The sensor passes that lower edge in the run's configuration (so the UI shows which window a run
covered); a window may reach further back than the cursor (an operator's re-scan: re-read
purchases are recognised by their version and cost nothing), but never starts after it, because
the purchases in between would be skipped while the cursor moved past them.

The end of the module holds the order path's promises as functions the asset checks call
(conservation, no on-account order pending payment, no draft in the ERP, totals that match), so
the checks stay thin and the rules they prove live next to the flow that keeps them.

No Dagster here: ``defs/orders/`` adapts this to assets, checks and a sensor, and a test or a
script can call :func:`run_order_intake` with the real connectors or anything that fits the ports.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd

from b2b_pipeline.connectors.sparklayer import purchases as wire
from b2b_pipeline.connectors.sparklayer.errors import (
    ConflictError,
    ForbiddenError,
    InvalidRequestError,
)
from b2b_pipeline.domain.exceptions import exception_frame
from b2b_pipeline.domain.orders import (
    ErpSnapshot,
    NormalisedOrders,
    OrderDecisions,
    decide_orders,
    normalise_purchases,
)
from b2b_pipeline.flows.portal_customers import portal_customers_for
from b2b_pipeline.flows.ports import Alerts, AuditTrail, Document, Erp, Portal, SyncStateStore
from b2b_pipeline.flows.recording import audit_events, file_exceptions, record_events

if TYPE_CHECKING:
    from b2b_pipeline.config.mappings import Mappings
    from b2b_pipeline.connectors.alerts import DeliveryResult
    from b2b_pipeline.connectors.sync_state import OrderCursor

log = logging.getLogger(__name__)

# Purchases whose clock was slightly behind others still get picked up.
DEFAULT_LOOKBACK = timedelta(minutes=5)
# One run handles a batch, never one run per order; the sensor asks for another run if more wait.
DEFAULT_MAX_ORDERS_PER_RUN = 5000
# ERP numbers written back per run (one portal call each); the rest wait for the next run.
WRITE_BACK_LIMIT = 5000
# How much of the newest-first list the sensor reads to know whether there is work.
SENSOR_PAGE = 500

NEVER = pd.Timestamp.min.tz_localize("UTC")

# An entry of the portal's purchase list: a purchase document, or whatever else the portal sent
# in its place (the rules queue such an entry as malformed; it never stops the batch).
PortalEntry = Document | list[Any] | str | int | float | bool | None
# (updated_at, purchase id): the order in which purchases are handled and the cursor moves.
PurchaseKey = tuple[pd.Timestamp, str]


# --- the window a run covers ----------------------------------------------------------------


@dataclass(frozen=True)
class IntakeWindow:
    """Which purchases a run handles.

    ``updated_gte``: the lower edge passed by the sensor (None = the durable cursor minus
    ``lookback``); never later than that (see the module docstring). ``purchase_ids``: an
    operator's retry: exactly these purchases are re-read and replayed, whatever was decided
    before, and the cursor does not move.
    """

    updated_gte: datetime | None = None
    purchase_ids: tuple[str, ...] = ()
    lookback: timedelta = DEFAULT_LOOKBACK
    max_orders: int = DEFAULT_MAX_ORDERS_PER_RUN

    @property
    def is_retry(self) -> bool:
        return bool(self.purchase_ids)


def durable_window_start(
    cursor: OrderCursor, lookback: timedelta = DEFAULT_LOOKBACK
) -> datetime | None:
    """The lower edge of the next window: the durable cursor minus the look-back (None: all)."""
    return cursor.updated_at - lookback if cursor.updated_at is not None else None


def window_start(cursor: OrderCursor, window: IntakeWindow) -> datetime | None:
    """The lower edge this run reads from: the requested one, unless it starts after the cursor."""
    durable = durable_window_start(cursor, window.lookback)
    if durable is None or window.updated_gte is None:
        return durable
    return min(pd.Timestamp(window.updated_gte), pd.Timestamp(durable)).to_pydatetime()


# --- what a run did ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteBackResult:
    """ERP numbers written onto portal purchases: written, waiting for a retry, refused."""

    written_back: int = 0
    write_back_pending: int = 0
    write_back_refused: int = 0


@dataclass
class OrderOutcome:
    """What deciding and posting one batch did (steps 2 to 4)."""

    received: int = 0
    to_post: int = 0
    posted: int = 0
    already_posted: int = 0
    filtered: int = 0
    malformed: int = 0
    exceptions: int = 0
    ignored: int = 0
    accounts_created: int = 0
    posted_orders: pd.DataFrame = field(default_factory=pd.DataFrame)
    new_exceptions: pd.DataFrame = field(default_factory=lambda: exception_frame())
    tracking: pd.DataFrame = field(default_factory=pd.DataFrame)

    def counts(self) -> dict[str, int]:
        """Orders per outcome, as the run's metadata shows them."""
        return {
            "received": self.received,
            "to_post": self.to_post,
            "posted": self.posted,
            "already_posted": self.already_posted,
            "filtered": self.filtered,
            "malformed": self.malformed,
            "exceptions": self.exceptions,
            "ignored": self.ignored,
            "accounts_to_create": self.accounts_created,
        }


@dataclass
class OrderIntakeResult:
    """Everything one intake run did, for the assets' metadata (and a test's assertions)."""

    outcome: OrderOutcome
    by_type: dict[str, int]
    window_start: datetime | None
    retry_of: tuple[str, ...]
    # More purchases waited than one run takes (``max_orders``): the sensor asks for another
    # run straight away rather than waiting for the next new order.
    more_waiting: bool
    cursor: OrderCursor
    open_in_queue: int
    alert: DeliveryResult | None
    write_back: WriteBackResult

    @property
    def new_exceptions(self) -> pd.DataFrame:
        return self.outcome.new_exceptions

    @property
    def new_by_category(self) -> dict[str, int]:
        new = self.outcome.new_exceptions
        if new.empty:
            return {}
        return {str(k): int(v) for k, v in new["category"].value_counts().items()}

    @property
    def alert_delivered_to_webhook(self) -> bool:
        return bool(self.alert is not None and self.alert.sent_to_webhook)


# --- the use case -----------------------------------------------------------------------------


def run_order_intake(
    *,
    portal: Portal,
    erp: Erp,
    audit: AuditTrail,
    state: SyncStateStore,
    mappings: Mappings,
    alerts: Alerts,
    run_id: str,
    window: IntakeWindow | None = None,
) -> OrderIntakeResult:
    """One order intake run, steps 1 to 6 of the module docstring, in that order."""
    window = window or IntakeWindow()
    start = None if window.is_retry else window_start(state.order_cursor(), window)
    collected = collect_purchases(portal, state, window, since=start)
    purchases = collected.purchases
    if purchases:
        batch = validate_purchases(
            portal=portal,
            erp=erp,
            audit=audit,
            state=state,
            mappings=mappings,
            purchases=purchases,
        )
        outcome = apply_decisions(
            portal=portal, erp=erp, audit=audit, state=state, batch=batch, run_id=run_id
        )
    else:
        outcome = OrderOutcome()
    if not window.is_retry:  # an operator's retry of old purchases must not move the cursor
        advance_cursor(state, purchases, run_id)
    alert = send_alert_digest(alerts, audit, outcome.new_exceptions, run_id=run_id)
    write_back = write_back_order_numbers(portal=portal, audit=audit, state=state, run_id=run_id)
    log.info("Order batch: %s", outcome.counts())
    return OrderIntakeResult(
        outcome=outcome,
        by_type=_by_type(purchases),
        window_start=start,
        retry_of=window.purchase_ids,
        more_waiting=collected.more_waiting,
        cursor=state.order_cursor(),
        open_in_queue=audit.exception_status_counts()["open"],
        alert=alert,
        write_back=write_back,
    )


# --- 1. collect -------------------------------------------------------------------------------


def purchase_updated_at(purchase: PortalEntry) -> pd.Timestamp:
    """When the portal last changed the purchase; an unreadable time sorts first."""
    moment = wire.purchase_updated_at(purchase)
    return NEVER if moment is None else moment


def purchase_key(purchase: PortalEntry) -> PurchaseKey:
    return (purchase_updated_at(purchase), wire.purchase_id(purchase) or "")


def _id(purchase: PortalEntry) -> str | None:
    return wire.purchase_id(purchase)


@dataclass(frozen=True)
class CollectedPurchases:
    """The purchases a run handles, and whether more were waiting than one run takes."""

    purchases: list[PortalEntry]
    more_waiting: bool = False


def collect_purchases(
    portal: Portal,
    state: SyncStateStore,
    window: IntakeWindow,
    *,
    since: datetime | None,
) -> CollectedPurchases:
    """The purchase versions this run must handle, oldest first (at most ``max_orders``).

    With ``window.purchase_ids`` (an operator's retry) exactly those purchases are re-read and
    replayed, whatever was decided before; otherwise everything changed since ``since`` that
    was not handled in that version already. The oldest go first, so the cursor moves on over
    a backlog run by run.
    """
    if window.purchase_ids:
        found = [portal.get_purchase(pid) for pid in window.purchase_ids]
        return CollectedPurchases([p for p in found if p is not None])

    since_ts = pd.Timestamp(since) if since is not None else None
    batch: list[PortalEntry] = []
    # The client pages the newest-first list so that nothing inside the window is missed, even
    # while buyers add and change purchases (see SparkLayerClient.iter_purchases).
    for purchase in portal.iter_purchases(updated_gte=since):
        # A server that ignores the filter still pages everything: filter here too. An entry
        # with no readable time stays in: the rules queue it as malformed.
        updated = wire.purchase_updated_at(purchase)
        if since_ts is not None and updated is not None and updated < since_ts:
            continue
        batch.append(purchase)
    if not batch:
        return CollectedPurchases([])
    ids = [pid for pid in map(_id, batch) if pid is not None]
    tracked = state.tracked_versions(ids)
    handled = dict(zip(tracked["portal_order_id"], tracked["portal_updated_at"], strict=True))
    fresh = [p for p in batch if _is_new_version(p, handled)]
    fresh.sort(key=purchase_key)
    return CollectedPurchases(
        fresh[: window.max_orders], more_waiting=len(fresh) > window.max_orders
    )


def _is_new_version(purchase: PortalEntry, handled: dict[str, pd.Timestamp | None]) -> bool:
    pid = _id(purchase)
    seen = handled.get(pid) if pid is not None else None
    if seen is None or pd.isna(seen):
        return True
    return purchase_updated_at(purchase) > pd.Timestamp(seen)


def _by_type(purchases: Sequence[PortalEntry]) -> dict[str, int]:
    kinds = pd.Series([wire.purchase_type(p) or "(none)" for p in purchases], dtype="object")
    return {str(k): int(v) for k, v in kinds.value_counts().items()}


# --- 2. decide --------------------------------------------------------------------------------


@dataclass
class ValidatedBatch:
    """A batch after the order rules: what to post, what to queue, what was filtered."""

    purchases: list[PortalEntry]
    normalised: NormalisedOrders
    decisions: OrderDecisions
    existing: pd.DataFrame  # ERP orders already posted for these purchases (external_ref, ...)
    ignored: set[str] = field(default_factory=set)  # closed by a person; not decided again


# (lists x SKUs) pairs a run reads by key before a full read of the price table is cheaper.
PRICE_KEY_PAIRS_PER_RUN = 100_000


def _erp_snapshot(
    erp: Erp,
    mappings: Mappings,
    orders: pd.DataFrame,
    lines: pd.DataFrame,
    overrides: pd.DataFrame,
) -> ErpSnapshot:
    """The ERP records the rules need for this batch, read by key when the batch is small.

    The customers, price lists and tax codes are small tables and read whole (the account
    rules ask which accounts exist). Products and quantity breaks are read for the batch's
    SKUs only, and breaks for the lists its accounts can price from (each account's list and
    that list's parent, and the list a new account gets under ``auto_create``): by primary key,
    so a one-order run reads a few rows of a million instead of all of them. Exact, not a copy
    that may lag the ERP; a large batch reads the tables whole, which is then cheaper.
    """
    customers = erp.read_customers()
    price_lists = erp.read_price_lists()
    tax_codes = erp.read_tax_codes()
    skus = set(lines["sku"].dropna().astype(str)) if "sku" in lines else set()
    accounts = (
        set(orders["accounting_id"].dropna().astype(str)) if "accounting_id" in orders else set()
    )
    for decision in overrides.get("decision", pd.Series(dtype=object)):
        if isinstance(decision, dict) and decision.get("account_code"):
            accounts.add(str(decision["account_code"]))
    lists = set(
        customers.loc[customers["account_code"].astype(str).isin(accounts), "price_list_code"]
        .dropna()
        .astype(str)
    )
    defaults = mappings.auto_create_defaults
    if mappings.unmapped_customer_policy == "auto_create" and defaults is not None:
        lists.add(str(defaults.price_list_code))
    parents = price_lists.loc[price_lists["code"].astype(str).isin(lists), "parent_code"]
    lists |= set(parents.dropna().astype(str))
    if len(skus) * max(len(lists), 1) > PRICE_KEY_PAIRS_PER_RUN:
        products, items = erp.read_products(), erp.read_price_list_items()
    else:
        products = erp.read_products(skus=skus)
        items = erp.read_price_list_items(price_list_codes=lists, skus=skus)
    return ErpSnapshot(
        customers=customers,
        products=products,
        tax_codes=tax_codes,
        price_lists=price_lists,
        price_list_items=items,
    )


def approved_overrides(queue: pd.DataFrame) -> pd.DataFrame:
    """Decisions operators took on approved exceptions of these orders (replayed by the rules);
    ``queue``: the batch's exceptions (:func:`batch_queue`)."""
    approved = queue[queue["status"] == "approved"] if not queue.empty else queue
    if approved.empty:
        return pd.DataFrame(columns=["portal_order_id", "decision"])
    decisions = approved["decision"].map(
        lambda d: json.loads(d) if isinstance(d, str) and d else (d or {})
    )
    return pd.DataFrame(
        {"portal_order_id": approved["entity_key"].to_numpy(), "decision": decisions.to_numpy()}
    )


def ignored_orders(queue: pd.DataFrame) -> set[str]:
    """Orders a person closed with ``exceptions ignore`` and that wait for nothing else.

    The runbook promises an ignored order is never posted: a later poll (the purchase changed,
    or the cause went away, e.g. a hold released) must not post it behind that decision's back.
    """
    if queue.empty:
        return set()
    ignored = set(queue.loc[queue["status"] == "ignored", "entity_key"].astype(str))
    waiting = set(queue.loc[queue["status"] != "ignored", "entity_key"].astype(str))
    return ignored - waiting


def batch_queue(audit: AuditTrail, order_ids: list[str]) -> pd.DataFrame:
    """The exceptions of these orders that decide how they are replayed (ignored, open,
    approved): one read of the queue for the batch, never the whole queue."""
    return audit.exceptions_for("order", order_ids, status=["ignored", "open", "approved"])


def validate_purchases(
    *,
    portal: Portal,
    erp: Erp,
    audit: AuditTrail,
    state: SyncStateStore,
    mappings: Mappings,
    purchases: list[PortalEntry],
) -> ValidatedBatch:
    """Apply every order rule (pure, vectorised) against the ERP's current records."""
    queue = batch_queue(audit, [pid for pid in map(_id, purchases) if pid is not None])
    ignored = ignored_orders(queue)
    decided = [p for p in purchases if _id(p) not in ignored]
    normalised = normalise_purchases(
        wire.read_purchases(decided), portal_customers_for(portal, state, decided)
    )
    _mark_paid_by_transactions(portal, mappings, normalised.orders)
    orders = normalised.orders
    order_ids = orders["portal_order_id"].astype(str).tolist()
    existing = erp.existing_orders(order_ids)
    overrides = approved_overrides(
        queue[queue["entity_key"].astype(str).isin(order_ids)] if not queue.empty else queue
    )
    decisions = decide_orders(
        orders,
        normalised.lines,
        _erp_snapshot(erp, mappings, orders, normalised.lines, overrides),
        mappings,
        posted_refs=set(existing["external_ref"].astype(str)),
        overrides=overrides,
    )
    return ValidatedBatch(
        purchases=purchases,
        normalised=normalised,
        decisions=decisions,
        existing=existing,
        ignored=ignored,
    )


def _mark_paid_by_transactions(portal: Portal, mappings: Mappings, orders: pd.DataFrame) -> None:
    """Set ``paid`` for the orders whose ERP status would be PAID but that were not paid at
    checkout: paid means the transactions applied to the balance cover the checkout total.

    Only those orders cost an extra call (the transactions endpoint); Pay on Account and Pay by
    Invoice orders are invoiced later and never need it.
    """
    status = orders["payment_method"].map(mappings.payment_methods)
    wanted = orders.index[(status == "PAID") & ~orders["paid"]]
    checkout_totals = orders["portal_gross"].astype(float)
    for index in wanted:
        transactions = portal.list_purchase_transactions(str(orders.at[index, "portal_order_id"]))
        covered = wire.applied_total(transactions) + 0.005 >= checkout_totals[index]
        orders.at[index, "paid"] = bool(covered)


# --- 3. post, queue, record -------------------------------------------------------------------


def apply_decisions(
    *,
    portal: Portal,
    erp: Erp,
    audit: AuditTrail,
    state: SyncStateStore,
    batch: ValidatedBatch,
    run_id: str,
) -> OrderOutcome:
    """Post the approved orders, queue the exceptions, record every outcome."""
    purchases = batch.purchases
    if not purchases:
        return OrderOutcome()
    normalised, decisions = batch.normalised, batch.decisions
    orders = normalised.orders

    events: list[pd.DataFrame] = []
    accounts = decisions.accounts_to_create
    if not accounts.empty:
        for record in accounts.to_dict(orient="records"):
            erp.create_customer({str(column): value for column, value in record.items()})
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

    posted = erp.post_sales_orders(decisions.to_post, decisions.to_post_lines)
    if not accounts.empty:
        _map_auto_created_accounts(portal, accounts, decisions.to_post, orders)
    if not posted.empty:
        posted = _record_postings(audit, posted, decisions, orders, run_id=run_id, events=events)

    already = decisions.already_posted
    if not already.empty:
        events.append(
            audit_events(
                already,
                run_id=run_id,
                entity="order",
                key="portal_order_id",
                action="already_posted",
            )
        )
        _record_missing_postings(audit, already, batch.existing, orders, run_id=run_id)
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
    _resolve_superseded(audit, orders, all_exceptions, run_id=run_id)
    opened = file_exceptions(audit, all_exceptions, run_id=run_id)
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
    record_events(audit, events)

    tracking = _tracking_rows(
        purchases, orders, decisions, posted, all_exceptions, batch.existing, batch.ignored
    )
    state.track_orders(tracking, run_id)

    newly_posted = int((~posted["already_posted"]).sum()) if not posted.empty else 0
    found_posted = int(posted["already_posted"].sum()) if not posted.empty else 0
    return OrderOutcome(
        received=len(purchases),
        to_post=len(decisions.to_post),
        posted=newly_posted,
        already_posted=found_posted + len(already),
        filtered=len(filtered),
        malformed=len(normalised.malformed),
        exceptions=len(all_exceptions),
        ignored=len(batch.ignored),
        accounts_created=len(accounts),
        posted_orders=posted,
        new_exceptions=_new_only(opened),
        tracking=tracking,
    )


def _new_only(opened: pd.DataFrame) -> pd.DataFrame:
    """The exceptions this run opened (the queue deduplicates: a re-seen one is not new)."""
    if opened.empty:
        return opened
    return opened[opened["is_new"].astype(bool)]


def _record_postings(
    audit: AuditTrail,
    posted: pd.DataFrame,
    decisions: OrderDecisions,
    orders: pd.DataFrame,
    *,
    run_id: str,
    events: list[pd.DataFrame],
) -> pd.DataFrame:
    """Audit what the ERP took (posted now, or found already posted) and record the postings
    finance reconciles from; the exceptions those orders had are resolved."""
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
    audit.record_order_postings(
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
        resolve_exceptions=True,  # they went through: one transaction with their postings
    )
    return posted


def _record_missing_postings(
    audit: AuditTrail,
    already: pd.DataFrame,
    existing: pd.DataFrame,
    orders: pd.DataFrame,
    *,
    run_id: str,
) -> None:
    """Record, from the ERP, the postings of orders the ERP has but the audit store does not.

    That happens when a run died between the ERP commit and the audit write: the next run finds
    the order ``already_posted`` and must not leave it missing from ``v_order_postings`` (the
    finance view and the totals check read it). Orders already recorded are left untouched.
    """
    ids = already["portal_order_id"].astype(str).tolist()
    missing = set(ids) - audit.posted_order_ids(ids)
    if not missing or existing.empty:
        return
    erp = existing.assign(external_ref=existing["external_ref"].astype(str))
    erp = erp[erp["external_ref"].isin(missing)].drop_duplicates("external_ref")
    portal_gross = orders.set_index(orders["portal_order_id"].astype(str))["portal_gross"]
    audit.record_order_postings(
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
        run_id,
    )


def _map_auto_created_accounts(
    portal: Portal, accounts: pd.DataFrame, to_post: pd.DataFrame, orders: pd.DataFrame
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
            customer = portal.get_customer(customer_id, lookup_by="sparklayer")
            if customer is not None and customer.get("accounting_id") != account_code:
                customer["accounting_id"] = account_code
                portal.put_customer(customer, lookup_by="sparklayer")
        except Exception as exc:  # the order is posted; the mapping is retried next time
            log.warning(
                "portal company %s not yet mapped to %s (%s)",
                customer_id,
                account_code,
                type(exc).__name__,
            )


def _resolve_superseded(
    audit: AuditTrail, orders: pd.DataFrame, exceptions: pd.DataFrame, *, run_id: str
) -> None:
    """An order has at most one exception at a time: when a replay stops at a different rule
    (or the order now passes, or is no longer live), the old exception is resolved, so the
    queue shows only what still needs someone."""
    handled = set(orders["portal_order_id"].astype(str))
    mine = audit.exceptions_for("order", handled, status=["open", "approved"])
    if mine.empty:
        return
    current = set(zip(exceptions["entity_key"].astype(str), exceptions["reason_code"], strict=True))
    stale = [
        key
        for key, reason in zip(mine["entity_key"].astype(str), mine["reason_code"], strict=True)
        if (key, reason) not in current
    ]
    if stale:
        audit.resolve_exceptions_for("order", stale, run_id)


def _tracking_rows(
    purchases: list[PortalEntry],
    orders: pd.DataFrame,
    decisions: OrderDecisions,
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
    if not already.empty:
        hit = base["portal_order_id"].isin(already["portal_order_id"].astype(str))
        base.loc[hit, "outcome"] = "posted"
        base.loc[hit, "reason_code"] = None
        # The ERP's number, so that an order whose run died before writing it back to the
        # portal still gets it written back (tracking keeps an earlier number if it had one).
        if not existing.empty:
            known = existing.set_index(existing["external_ref"].astype(str))["order_no"]
            known = known[~known.index.duplicated()].astype(str)
            base.loc[hit, "erp_order_no"] = base.loc[hit, "portal_order_id"].map(known)
    if ignored:
        base.loc[base["portal_order_id"].isin(ignored), "outcome"] = "ignored"
    base["outcome"] = base["outcome"].fillna("filtered")
    return base


# --- 4. advance the cursor --------------------------------------------------------------------


def advance_cursor(state: SyncStateStore, purchases: list[PortalEntry], run_id: str) -> None:
    """Move the durable cursor to the newest purchase handled (after its outcome is durable)."""
    dated = [p for p in purchases if _id(p) is not None and wire.purchase_updated_at(p)]
    if not dated:
        return
    newest = max(dated, key=purchase_key)
    state.advance_order_cursor(
        purchase_updated_at(newest).to_pydatetime(), str(_id(newest)), run_id
    )


# --- 5. tell people ---------------------------------------------------------------------------


def send_alert_digest(
    alerts: Alerts, audit: AuditTrail, new_exceptions: pd.DataFrame, *, run_id: str
) -> DeliveryResult | None:
    """One digest for the exceptions this run opened (none when there are none), audited.

    A chat webhook that fails never fails the run: the exceptions are in the queue already, and
    the audit trail says the alert did not go out.
    """
    if new_exceptions.empty:
        return None
    delivery = alerts.send_digest(new_exceptions, run_label=f"run {run_id[:8]}")
    audit.record_event(
        "exception",
        "alert_digest",
        "alert_sent" if delivery.sent_to_webhook or not delivery.error else "alert_failed",
        run_id=run_id,
        detail={
            "exceptions": len(new_exceptions),
            "webhook": delivery.sent_to_webhook,
            "error": delivery.error,
        },
    )
    return delivery


# --- 6. write the ERP number back -------------------------------------------------------------


def write_back_order_numbers(
    *,
    portal: Portal,
    audit: AuditTrail,
    state: SyncStateStore,
    run_id: str,
    limit: int = WRITE_BACK_LIMIT,
) -> WriteBackResult:
    """Write ERP order numbers into the portal purchases; failures wait for the next run."""
    pending = state.orders_awaiting_write_back(limit)
    written: list[dict[str, str | pd.Timestamp]] = []
    failed: list[str] = []
    refused: list[dict[str, str]] = []
    for order_id, visible, order_no in zip(
        pending["portal_order_id"].astype(str),
        pending["visible_id"],
        pending["erp_order_no"].astype(str),
        strict=True,
    ):  # one API call per order: the API has no batch
        try:
            purchase = portal.set_internal_identifier(order_id, order_no)
        except (InvalidRequestError, ForbiddenError, ConflictError) as exc:
            if isinstance(exc, ConflictError) and not exc.already_exists:
                # Kept changing under us (buyers editing): the next run tries again.
                log.warning("order %s: write-back conflicted, retried", order_id)
                failed.append(order_id)
                continue
            # The portal will refuse the same body again (or another purchase already carries
            # this ERP number): a person must look at the order.
            refused.append(_write_back_refusal(order_id, visible, order_no, exc))
            failed.append(order_id)
            continue
        except Exception as exc:  # retried on the next run; posting itself is already durable
            log.warning(
                "order %s: ERP number not written back yet (%s)", order_id, type(exc).__name__
            )
            failed.append(order_id)
            continue
        written.append(
            {"portal_order_id": order_id, "portal_updated_at": purchase_updated_at(purchase)}
        )
    frame = pd.DataFrame(written, columns=["portal_order_id", "portal_updated_at"])
    state.mark_internal_written(frame)
    if refused:
        file_exceptions(audit, exception_frame(refused), run_id=run_id)
    if written:
        # A refusal fixed in the portal closes itself once the number is written.
        audit.resolve_exceptions_for("order", frame["portal_order_id"].tolist(), run_id)
    record_events(
        audit,
        audit_events(
            frame,
            run_id=run_id,
            entity="order",
            key="portal_order_id",
            action="erp_number_written_back",
        ),
    )
    return WriteBackResult(
        written_back=len(written), write_back_pending=len(failed), write_back_refused=len(refused)
    )


def _write_back_refusal(
    order_id: str, visible: str | None, order_no: str, error: Exception
) -> dict[str, str]:
    """A WRITE_BACK_REFUSED exception row for an order the portal would not update."""
    reason = getattr(error, "detail", None) or getattr(error, "title", None) or str(error)
    # The number the buyer and customer service see first; the portal id to find it by.
    label = f"{visible} ({order_id})" if isinstance(visible, str) and visible else order_id
    return {
        "entity": "order",
        "entity_key": order_id,
        "reason_code": "WRITE_BACK_REFUSED",
        "message": (
            f"Order {label} is in the ERP as order {order_no}, but the "
            f"portal refused to record that number on it ({reason}). Nothing is posted twice; "
            "correct the order in the portal, then retry it to write the number back."
        ),
    }


# --- what the sensor asks: is there work? -----------------------------------------------------


@dataclass(frozen=True)
class PortalActivity:
    """The head of the portal's purchase list, as the order sensor sees it.

    ``newest``: the newest purchase with an id (None: no purchase at all); ``fresh``: it is
    newer than what the sensor saw last; ``only_numbered``: everything newer than that already
    carries its ERP number (our own write-back, or a later edit of a posted order, which
    reconciliation compares), so no intake is needed for it.
    """

    newest: PurchaseKey | None
    fresh: bool
    only_numbered: bool


def portal_activity(
    portal: Portal, *, seen: PurchaseKey | None, page: int = SENSOR_PAGE
) -> PortalActivity:
    """One page of the newest-first list: enough to know whether there is work (the run pages
    through all of it). Entries with no id or time (malformed) start no run of their own; the
    next run that starts for a real purchase queues them."""
    since = seen[0] if seen is not None else None
    head = list(
        itertools.islice(
            portal.iter_purchases(updated_gte=since.to_pydatetime() if since is not None else None),
            page,
        )
    )
    newest = max((purchase_key(p) for p in head if _id(p) is not None), default=None)
    if newest is None:
        return PortalActivity(newest=None, fresh=False, only_numbered=False)
    fresh = seen is None or newest > seen
    changed = [p for p in head if seen is None or purchase_key(p) > seen]
    only_numbered = all(wire.internal_id(p) is not None for p in changed)
    return PortalActivity(newest=newest, fresh=fresh, only_numbered=only_numbered)
