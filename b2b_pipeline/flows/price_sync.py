"""Price lists, ERP → portal: group lists, customer-specific lists and quantity breaks.

What the portal holds (the decision operators should know): SparkLayer prices a buyer from the
first of their lists that prices a SKU, the ERP at the lowest break over the account's list and
its parent. So every customer-specific list is pushed as its *effective* breaks: for each SKU it
prices, every break quantity of it and its group list, at the ERP's price there
(``domain.price_lists.effective_price_list_items``). Group lists are pushed as the ERP holds them.

The steps of ``price_sync_job``, in order:

1. :func:`check_erp_products`: the catalogue; a repeated SKU is held back and queued.
2. :func:`check_erp_prices`: lists and breaks that pass every rule; a SKU with one broken
   break is held back on that list as a whole (the portal keeps its last good prices).
3. :func:`sync_price_lists`: missing lists created first, then only the SKUs whose breaks
   changed sent, 500 per call, compared with the snapshot of what was last pushed, or, with
   ``full_comparison`` (nightly), with the portal's prices read back, which repairs drift. Only
   then are customers pointed at a list (the customer sync runs after it in the same job), so no
   buyer ever sees an empty list. It ends with :func:`record_sync_outcome`.

Data limits: a sync that would take the portal past SparkLayer's hard limit on price lists or
priced SKUs creates no new list, or prices no new SKU, that run (a ``PORTAL_LIMIT_EXCEEDED``
exception says which); past the recommended limit it only warns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd

from b2b_pipeline.config.mappings import Mappings
from b2b_pipeline.domain import portal_limits as limits
from b2b_pipeline.domain import price_lists as rules
from b2b_pipeline.domain.customers import (
    customers_by_price_list,
    desired_portal_customers,
    validate_customers,
)
from b2b_pipeline.domain.inventory import validate_products
from b2b_pipeline.domain.price_lists import EmptyPriceExtract
from b2b_pipeline.flows.ports import AuditTrail, Erp, Portal, SyncStateStore
from b2b_pipeline.flows.recording import (
    Clears,
    SyncOutcome,
    audit_events,
    file_exceptions,
    new_exception_count,
    record_sync_outcome,
)

__all__ = [
    "EmptyPriceExtract",
    "check_erp_prices",
    "check_erp_products",
    "erp_price_changes",
    "portal_price_drift",
    "read_portal_pricing",
    "run_price_sync",
    "sync_price_lists",
]

# What each step checks in full on every run (so a problem it no longer finds is resolved).
# Rows the portal refused stay different from the snapshot, so every run sends them again.
ERP_PRODUCT_PROBLEMS: Clears = ("product", frozenset({"INVALID_ERP_RECORD"}))
ERP_PRICE_PROBLEMS: Clears = ("price_list", frozenset({"INVALID_ERP_RECORD"}))
PORTAL_PRICE_PROBLEMS: Clears = (
    "price_list",
    frozenset({"PORTAL_REJECTED_ROW", "PRICE_LIST_SYNC_FAILED", "PORTAL_LIMIT_EXCEEDED"}),
)
# The ERP tables whose changes the intra-day sensor watches (a deleted break bumps its list).
PRICE_TABLES = ("price_lists", "price_list_items", "products")
# How many lists the post-sync comparison reads back in full; beyond that it samples, so the
# check stays a few API calls on a merchant with thousands of customer-specific lists.
COMPARED_LISTS_MAX = 20


# --- 1, 2. the ERP's catalogue and prices ---------------------------------------------------


@dataclass(frozen=True)
class ErpProductsResult:
    products: pd.DataFrame
    held_back: int

    @property
    def active(self) -> int:
        return int(self.products["active"].sum()) if len(self.products) else 0


def check_erp_products(
    *, erp: Erp, audit: AuditTrail, mappings: Mappings, run_id: str
) -> ErpProductsResult:
    clean, problems = validate_products(erp.read_products(), mappings)
    file_exceptions(audit, problems, run_id=run_id, clears=ERP_PRODUCT_PROBLEMS)
    return ErpProductsResult(products=clean, held_back=len(problems))


@dataclass(frozen=True)
class ErpPrices:
    """The ERP's price lists and breaks that can go to the portal, and the (list, SKU) pairs
    held back (their last good prices stay on the portal until the ERP is corrected)."""

    lists: pd.DataFrame
    items: pd.DataFrame
    held_back: pd.DataFrame
    rows_in_erp: int
    new_exceptions: int = 0


def check_erp_prices(
    *, erp: Erp, audit: AuditTrail, mappings: Mappings, run_id: str, products: pd.DataFrame
) -> ErpPrices:
    lists, list_problems = rules.validate_price_lists(erp.read_price_lists(), mappings)
    raw_items = erp.read_price_list_items()
    items, item_problems = rules.validate_price_list_items(
        raw_items, mappings, price_lists=lists, products=products
    )
    opened = file_exceptions(
        audit,
        pd.concat([list_problems, item_problems], ignore_index=True),
        run_id=run_id,
        clears=ERP_PRICE_PROBLEMS,
    )
    return ErpPrices(
        lists=lists,
        items=items,
        held_back=rules.held_back_skus(item_problems),
        rows_in_erp=len(raw_items),
        new_exceptions=new_exception_count(opened),
    )


# --- 3. the portal's price lists ------------------------------------------------------------


@dataclass(frozen=True)
class PriceSyncResult:
    """What the price step did, as the asset shows it."""

    full_comparison: bool
    lists: int
    lists_created: int
    skus_changed: int
    skus_added: int
    skus_repriced: int
    skus_removed: int
    skus_refused_by_portal: int
    pricing_calls: int
    minimum_pricing_calls: int
    held_back_in_erp: int
    customer_specific_lists: int
    skus_held_by_portal_limit: int
    # limit -> {"count", "hard"}: what the portal would hold after the sync
    portal_limits: dict[str, dict[str, int]] = field(default_factory=dict)
    refused_by_portal_limit: list[str] = field(default_factory=list)
    limit_warnings: list[str] = field(default_factory=list)
    new_exceptions: int = 0


def read_portal_pricing(portal: Portal, slugs: Iterable[str]) -> pd.DataFrame:
    """What the portal actually holds for these lists (``price_list_slug``, ``sku``,
    ``quantity``, ``price``: one read per list); a list the portal does not have holds
    nothing."""
    from b2b_pipeline.connectors.sparklayer.errors import NotFoundError

    frames = []
    for slug in slugs:
        try:
            frames.append(rules.portal_pricing_rows(slug, portal.iter_pricing(slug)))
        except NotFoundError:  # not created yet (or refused by a data limit)
            continue
    if not frames:
        return rules.portal_pricing_rows("", [])
    return pd.concat(frames, ignore_index=True)


def _push_pricing(portal: Portal, changes: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """PATCH each list's changed SKUs; returns the rows the portal refused (``sku`` None for a
    list that failed as a whole) and the calls made."""
    from b2b_pipeline.connectors.sparklayer.errors import SparkLayerError

    refused, calls = [], 0
    for slug, items in rules.pricing_batches(changes).items():  # one PATCH per 500 SKUs
        try:
            result = portal.patch_pricing(slug, items)
        except SparkLayerError as exc:  # the whole list failed to update: say so, per list
            message = exc.detail or exc.title or str(exc)
            refused.append(rules.failed_list_rows(slug, items, message))
            continue
        calls += result.calls
        if result.rejected:
            refused.append(rules.rejected_pricing_rows(slug, result.rejected))
    if not refused:
        return pd.DataFrame(columns=["price_list_slug", "sku", "field", "message"]), calls
    return pd.concat(refused, ignore_index=True), calls


def sync_price_lists(
    *,
    portal: Portal,
    erp: Erp,
    audit: AuditTrail,
    state: SyncStateStore,
    mappings: Mappings,
    run_id: str,
    erp_lists: pd.DataFrame,
    erp_items: pd.DataFrame,
    held_back: pd.DataFrame,
    full_comparison: bool = False,
) -> PriceSyncResult:
    """Every ERP price list on the portal with exactly the breaks the ERP implies.

    ``erp_lists``, ``erp_items``, ``held_back``: :class:`ErpPrices` (the clean extracts).
    Raises :class:`EmptyPriceExtract` (nothing sent) when the ERP returned no prices at all
    while the portal holds some.
    """
    started = datetime.now(UTC)
    desired_lists = rules.desired_price_lists(erp_lists)
    portal_lists = pd.DataFrame(list(portal.iter_price_lists()))
    to_create = rules.lists_to_create(desired_lists, portal_lists)
    on_portal = rules.portal_list_slugs(portal_lists)
    if full_comparison:
        # Lists about to be created hold nothing yet: only the others are read back.
        previous = read_portal_pricing(portal, [s for s in desired_lists["slug"] if s in on_portal])
    else:
        previous = state.price_snapshot()
    rules.refuse_empty_extract(erp_items, previous)

    # The portal's data limits, before anything is sent (contract §1).
    checked = limits.price_list_limits(
        erp_items,
        previous,
        desired_slugs=desired_lists["slug"],
        lists_on_portal=on_portal,
        held_back=held_back,
    )
    refused_limits = limits.exceeded(checked)
    if "price_lists" in refused_limits:
        to_create = to_create.iloc[0:0]
    for slug, name, currency in zip(
        to_create["slug"], to_create["name"], to_create["currency_code"], strict=True
    ):  # lists first, so the pricing below has somewhere to go
        portal.create_price_list(slug, name, currency)

    changes = rules.price_changes(
        erp_items, previous, held_back=held_back, erp_price_lists=erp_lists
    )
    held = limits.held_by_price_limits(
        changes, checked, lists_on_portal=on_portal | set(to_create["slug"]), portal_items=previous
    )
    changes = changes[~held].reset_index(drop=True)

    rejected, calls = _push_pricing(portal, changes)
    not_applied = rejected.dropna(subset=["sku"])
    state.replace_price_snapshot(rules.snapshot_after_push(previous, changes, not_applied))
    applied = rules.applied_changes(changes, not_applied)
    if not applied.empty:
        audit.record_prices(
            rules.price_history(applied, erp_lists, pushed_at=datetime.now(UTC)), run_id
        )

    exceptions = limits.limit_exceptions(checked, entity="price_list")
    reportable = rejected.dropna(subset=["message"])
    if not reportable.empty:  # name the customers who still see the old price
        clean, _ = validate_customers(erp.read_customers(), mappings)
        customers = desired_portal_customers(clean, mappings, erp_price_lists=erp_lists)
        exceptions = pd.concat(
            [
                exceptions,
                rules.price_sync_exceptions(reportable, customers_by_price_list(customers)),
            ],
            ignore_index=True,
        )
    opened = record_sync_outcome(
        SyncOutcome(
            data_type="pricing",
            entity="price_list",
            started_at=started,
            events=[
                audit_events(
                    to_create,
                    run_id=run_id,
                    entity="price_list",
                    key="slug",
                    action="created",
                    detail_columns=["name", "currency_code"],
                ),
                audit_events(
                    applied.assign(key=applied["price_list_slug"] + "/" + applied["sku"]),
                    run_id=run_id,
                    entity="price_list",
                    key="key",
                    action=applied["change"].map(
                        {"added": "pushed", "changed": "pushed", "removed": "removed"}
                    ),
                    detail_columns=["price_list_slug", "sku", "change", "pricing"],
                ),
            ],
            exceptions=exceptions,
            clears=PORTAL_PRICE_PROBLEMS,
            records_failed=len(not_applied),
            reported_entities=("price_list", "product"),
        ),
        portal=portal,
        audit=audit,
        run_id=run_id,
    )
    counts = changes["change"].value_counts()
    return PriceSyncResult(
        full_comparison=full_comparison,
        lists=len(desired_lists),
        lists_created=len(to_create),
        skus_changed=len(changes),
        skus_added=int(counts.get("added", 0)),
        skus_repriced=int(counts.get("changed", 0)),
        skus_removed=int(counts.get("removed", 0)),
        skus_refused_by_portal=len(not_applied),
        pricing_calls=calls,
        minimum_pricing_calls=rules.minimum_pricing_calls(changes),
        held_back_in_erp=len(held_back),
        customer_specific_lists=int(erp_lists["parent_code"].notna().sum()),
        skus_held_by_portal_limit=int(held.sum()),
        portal_limits={c.limit: {"count": c.count, "hard": c.hard} for c in checked},
        refused_by_portal_limit=sorted(refused_limits),
        limit_warnings=limits.limit_warnings(checked),
        new_exceptions=new_exception_count(opened),
    )


@dataclass(frozen=True)
class PriceSync:
    products: ErpProductsResult
    prices: ErpPrices
    price_lists: PriceSyncResult


def run_price_sync(
    *,
    portal: Portal,
    erp: Erp,
    audit: AuditTrail,
    state: SyncStateStore,
    mappings: Mappings,
    run_id: str,
    full_comparison: bool = False,
) -> PriceSync:
    """The price steps of ``price_sync_job``, in order, outside Dagster (the job then runs the
    customer sync, so a list just filled is given to its customers)."""
    products = check_erp_products(erp=erp, audit=audit, mappings=mappings, run_id=run_id)
    prices = check_erp_prices(
        erp=erp, audit=audit, mappings=mappings, run_id=run_id, products=products.products
    )
    pushed = sync_price_lists(
        portal=portal,
        erp=erp,
        audit=audit,
        state=state,
        mappings=mappings,
        run_id=run_id,
        erp_lists=prices.lists,
        erp_items=prices.items,
        held_back=prices.held_back,
        full_comparison=full_comparison,
    )
    return PriceSync(products=products, prices=prices, price_lists=pushed)


# --- what the sensor and the check ask ------------------------------------------------------


def erp_price_changes(*, erp: Erp, seen: Mapping[str, str]) -> dict[str, str]:
    """Per price table changed since ``seen`` (table -> ISO time of the newest change already
    synced), the ISO time of its newest change; empty when nothing changed."""
    newest: dict[str, str] = {}
    for table in PRICE_TABLES:
        since = datetime.fromisoformat(seen[table]) if seen.get(table) else None
        changed = erp.changed_since(table, since)
        if changed is not None:
            newest[table] = changed.isoformat()
    return newest


@dataclass(frozen=True)
class PriceDrift:
    lists_compared: int
    differing: list[str]  # "<list>/<SKU>" whose portal breaks differ from what the ERP implies


def portal_price_drift(
    *,
    portal: Portal,
    erp_lists: pd.DataFrame,
    erp_items: pd.DataFrame,
    held_back: pd.DataFrame,
    most_lists: int = COMPARED_LISTS_MAX,
) -> PriceDrift:
    """The portal's prices read back and compared with what the ERP implies (group lists as in
    the ERP, customer-specific lists as their effective breaks): every list up to
    ``most_lists``, a deterministic sample of lists beyond that."""
    slugs = rules.lists_to_compare(erp_items["price_list_code"], most_lists)
    drift = rules.price_drift(
        slugs,
        read_portal_pricing(portal, slugs),
        erp_items=erp_items,
        erp_price_lists=erp_lists,
        held_back=held_back,
    )
    return PriceDrift(
        lists_compared=len(slugs),
        differing=(drift["price_list_slug"] + "/" + drift["sku"]).tolist(),
    )
