"""Customers, ERP → portal: accounts, groups, credit hold and release.

Three steps, run in this order by ``customer_sync_job`` (and by :func:`run_customer_sync`):

1. :func:`check_erp_customers`: read the ERP's accounts and hold back every one that breaks a
   rule (unmapped group or tax code, missing price list, repeated code), each in the exception
   queue; a problem no longer found is resolved.
2. :func:`sync_customer_groups`: every mapped group, and the on-hold group (ordering off, no
   Pay on Account), exists on the portal; none is created past the portal's hard limit.
3. :func:`sync_portal_customers`: one PUT per account that differs from the portal (the
   customers API takes one record per call, so the loop over calls is the cost), matched by
   ``accounting_id`` = ERP account code; held, blocked or inactive accounts go to the on-hold
   group with a credit limit of 0, and come back on release. A customer is pointed at a price
   list only once the list holds prices. It ends with :func:`record_sync_outcome`.

The group step is setup, not a sync the merchant follows: it files its limit exceptions but
reports nothing to the portal's sync log (the customer step reports the customers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd

from b2b_pipeline.config.mappings import Mappings
from b2b_pipeline.domain import customers as rules
from b2b_pipeline.domain import portal_limits as limits
from b2b_pipeline.domain.price_lists import portal_list_slugs, validate_price_lists
from b2b_pipeline.flows.portal_customers import remember_portal_customers
from b2b_pipeline.flows.ports import AuditTrail, Erp, Portal, SyncStateStore
from b2b_pipeline.flows.recording import (
    Clears,
    SyncOutcome,
    audit_events,
    file_exceptions,
    new_exception_count,
    record_sync_outcome,
)

# What each step checks in full on every run (so a problem it no longer finds is resolved).
ERP_CUSTOMER_PROBLEMS: Clears = (
    "customer",
    frozenset({"INVALID_ERP_RECORD", "UNMAPPED_CUSTOMER_GROUP", "UNMAPPED_TAX_CODE"}),
)
PORTAL_CUSTOMER_PROBLEMS: Clears = (
    "customer",
    frozenset({"PORTAL_REJECTED_RECORD", "PORTAL_LIMIT_EXCEEDED"}),
)
PORTAL_GROUP_PROBLEMS: Clears = ("customer_group", frozenset({"PORTAL_LIMIT_EXCEEDED"}))


# --- 1. the ERP's accounts ------------------------------------------------------------------


@dataclass(frozen=True)
class ErpCustomersResult:
    """The accounts that passed every rule, and what was held back."""

    customers: pd.DataFrame
    erp_accounts: int
    held_back: int
    new_exceptions: int

    @property
    def on_credit_hold(self) -> int:
        return int(self.customers["credit_hold"].sum()) if len(self.customers) else 0


def check_erp_customers(
    *, erp: Erp, audit: AuditTrail, mappings: Mappings, run_id: str
) -> ErpCustomersResult:
    raw = erp.read_customers()
    lists, _ = validate_price_lists(erp.read_price_lists(), mappings)
    clean, problems = rules.validate_customers(raw, mappings, price_lists=lists)
    opened = file_exceptions(audit, problems, run_id=run_id, clears=ERP_CUSTOMER_PROBLEMS)
    return ErpCustomersResult(
        customers=clean,
        erp_accounts=len(raw),
        held_back=len(problems),
        new_exceptions=new_exception_count(opened),
    )


# --- 2. the portal's groups -----------------------------------------------------------------


@dataclass(frozen=True)
class CustomerGroupsResult:
    groups: int
    created: list[str]
    refused_by_portal_limit: list[str]
    limit_warnings: list[str]


def sync_customer_groups(
    *, portal: Portal, audit: AuditTrail, mappings: Mappings, run_id: str
) -> CustomerGroupsResult:
    wanted = rules.customer_groups_needed(mappings)
    existing = rules.group_slugs(portal.list_customer_groups())
    checked = limits.check_limits(
        {"customer_groups": limits.projected_count(existing, rules.group_slugs(wanted))}
    )
    refused = limits.exceeded(checked)
    missing = [] if "customer_groups" in refused else rules.groups_to_create(wanted, existing)
    for group in missing:  # a handful of groups, one create call each
        portal.create_customer_group(group)
    file_exceptions(
        audit,
        limits.limit_exceptions(checked, entity="customer_group"),
        run_id=run_id,
        clears=PORTAL_GROUP_PROBLEMS,
    )
    return CustomerGroupsResult(
        groups=len(wanted),
        created=rules.group_slugs(missing),
        refused_by_portal_limit=sorted(refused),
        limit_warnings=limits.limit_warnings(checked),
    )


# --- 3. the portal's customers --------------------------------------------------------------


@dataclass(frozen=True)
class CustomerSyncResult:
    """What the customer step did, as the asset shows it."""

    accounts: int
    created: int
    updated: int
    unchanged: int
    refused_by_portal: int
    credit_holds_applied: int
    credit_holds_released: int
    api_calls: int
    held_by_portal_limit: int
    refused_by_portal_limit: list[str] = field(default_factory=list)
    limit_warnings: list[str] = field(default_factory=list)
    new_exceptions: int = 0


def sync_portal_customers(
    *,
    portal: Portal,
    erp: Erp,
    audit: AuditTrail,
    state: SyncStateStore,
    mappings: Mappings,
    run_id: str,
    erp_customers: pd.DataFrame,
) -> CustomerSyncResult:
    """Bring the portal's customers to what the clean ERP accounts imply."""
    from b2b_pipeline.connectors.sparklayer.errors import SparkLayerError

    started = datetime.now(UTC)
    lists, _ = validate_price_lists(erp.read_price_lists(), mappings)
    desired = rules.desired_portal_customers(erp_customers, mappings, erp_price_lists=lists)
    desired = rules.filled_lists_only(desired, state.filled_price_lists())
    portal_documents = list(portal.iter_customers())
    on_portal = pd.DataFrame(portal_documents)
    changes = rules.customer_changes(desired, on_portal)
    moves = rules.holds_and_releases(desired, on_portal, on_hold_group=mappings.on_hold_group)

    to_send = changes[changes["action"] != "unchanged"]
    # The portal's data limits, before anything is sent (contract §1).
    held = limits.customer_limits(to_send, on_portal=len(on_portal))
    to_send = to_send[~held.held]

    sent: list[str] = []
    written: list[dict] = []
    refusals: list[tuple[str, str | None]] = []
    for account, body, lookup_by in zip(
        to_send["account_code"], to_send["body"], to_send["lookup_by"], strict=True
    ):  # the customers API takes one record per call: the calls are the cost, not this loop
        try:
            written.append(portal.put_customer(body, lookup_by=lookup_by))
            sent.append(account)
        except SparkLayerError as exc:
            refusals.append((account, exc.detail or exc.title))
    # What the portal holds now, as far as this run knows: the order runs read customers from
    # it instead of the whole list (``order_intake.portal_customers_for``).
    rewritten = {doc.get("id") for doc in written if isinstance(doc, dict)}
    remember_portal_customers(
        state,
        [d for d in portal_documents if d.get("id") not in rewritten]
        + [d for d in written if isinstance(d, dict)],
        complete=True,
    )

    done = to_send[to_send["account_code"].isin(sent)]
    events = [
        audit_events(
            done,
            run_id=run_id,
            entity="customer",
            key="account_code",
            action=done["action"].map({"create": "created", "update": "pushed"}),
            detail_columns=["changed_fields", "matched_by"],
        )
    ]
    applied_moves = moves[moves["account_code"].isin(sent)] if not moves.empty else moves
    if not applied_moves.empty:
        events.append(
            audit_events(
                applied_moves,
                run_id=run_id,
                entity="customer",
                key="account_code",
                action=applied_moves["action"],
                category="AUTHORISATION",
                detail_columns=[c for c in ("reason", "group") if c in applied_moves.columns],
            )
        )
    sent_desired = desired[desired["account_code"].isin(sent)]
    if not sent_desired.empty:  # the lists each account sees from now (the price history)
        audit.record_customer_lists(
            sent_desired[["account_code", "price_lists", "discount_percentage"]], run_id
        )
    refused = rules.refused_customers(pd.DataFrame(refusals, columns=["account_code", "reason"]))
    opened = record_sync_outcome(
        SyncOutcome(
            data_type="customers",
            entity="customer",
            started_at=started,
            events=events,
            exceptions=pd.concat([refused, held.exceptions], ignore_index=True),
            clears=PORTAL_CUSTOMER_PROBLEMS,
            went_through=sent,
            records_failed=len(refusals) + int(held.held.sum()),
        ),
        portal=portal,
        audit=audit,
        run_id=run_id,
    )
    moved = moves["action"].value_counts() if not moves.empty else pd.Series(dtype=int)
    return CustomerSyncResult(
        accounts=len(desired),
        created=int((done["action"] == "create").sum()),
        updated=int((done["action"] == "update").sum()),
        unchanged=int((changes["action"] == "unchanged").sum()),
        refused_by_portal=len(refusals),
        credit_holds_applied=int(moved.get("credit_hold_applied", 0)),
        credit_holds_released=int(moved.get("credit_hold_released", 0)),
        api_calls=len(to_send),
        held_by_portal_limit=int(held.held.sum()),
        refused_by_portal_limit=sorted(held.refused),
        limit_warnings=held.warnings,
        new_exceptions=new_exception_count(opened),
    )


# --- the whole sync, and what the checks compare --------------------------------------------


@dataclass(frozen=True)
class CustomerSync:
    erp: ErpCustomersResult
    groups: CustomerGroupsResult
    customers: CustomerSyncResult


def run_customer_sync(
    *,
    portal: Portal,
    erp: Erp,
    audit: AuditTrail,
    state: SyncStateStore,
    mappings: Mappings,
    run_id: str,
) -> CustomerSync:
    """The three steps of ``customer_sync_job``, in order, outside Dagster."""
    checked = check_erp_customers(erp=erp, audit=audit, mappings=mappings, run_id=run_id)
    groups = sync_customer_groups(portal=portal, audit=audit, mappings=mappings, run_id=run_id)
    customers = sync_portal_customers(
        portal=portal,
        erp=erp,
        audit=audit,
        state=state,
        mappings=mappings,
        run_id=run_id,
        erp_customers=checked.customers,
    )
    return CustomerSync(erp=checked, groups=groups, customers=customers)


def unmapped_customer_groups(*, erp: Erp, mappings: Mappings) -> list[str]:
    """ERP customer groups with no portal group in the mapping file."""
    return rules.unmapped_customer_groups(erp.read_customers(), mappings)


@dataclass(frozen=True)
class MissingLists:
    customers: int
    missing: list[str]  # "<account>: <slug>"


def customers_on_missing_lists(*, portal: Portal) -> MissingLists:
    """Portal customers pointed at a price list the portal does not hold."""
    slugs = portal_list_slugs(pd.DataFrame(list(portal.iter_price_lists())))
    customers = pd.DataFrame(list(portal.iter_customers()))
    return MissingLists(
        customers=len(customers), missing=rules.customers_on_missing_lists(customers, slugs)
    )


@dataclass(frozen=True)
class CustomerDrift:
    accounts: int
    differing: list[str]  # account codes whose portal record differs from the ERP's


def customer_drift(
    *, portal: Portal, erp: Erp, mappings: Mappings, erp_customers: pd.DataFrame
) -> CustomerDrift:
    """A full comparison of the portal's customers with what the ERP intends (group, lists,
    discount, tax exemption, credit); one page read per 250 customers."""
    lists, _ = validate_price_lists(erp.read_price_lists(), mappings)
    desired = rules.desired_portal_customers(erp_customers, mappings, erp_price_lists=lists)
    on_portal = pd.DataFrame(list(portal.iter_customers()))
    portal_lists = portal_list_slugs(pd.DataFrame(list(portal.iter_price_lists())))
    # Lists not yet on the portal are withheld on purpose (never point at an empty list).
    desired = rules.filled_lists_only(desired, portal_lists)
    changes = rules.customer_changes(desired, on_portal)
    drift = changes[changes["action"] != "unchanged"]
    return CustomerDrift(accounts=len(changes), differing=drift["account_code"].tolist())
