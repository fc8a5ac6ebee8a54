"""Stock, ERP → portal, on a schedule (every 15 minutes by default).

Stock moves constantly; pushing every movement would spend the portal's rate limit on noise.
So stock goes in scheduled batches: a snapshot of available stock (on hand − allocated) per SKU
and portal stock location, compared with what was last pushed, and only the levels that
changed are sent, 500 per call. A lag of minutes is the accepted price of staying under the
portal's rate limit.

The steps of ``inventory_sync_job``, in order: the catalogue
(:func:`b2b_pipeline.flows.price_sync.check_erp_products`), :func:`check_erp_inventory` (stock
rows that pass every rule; the others are queued), then :func:`sync_stock_levels`, which
creates any mapped stock location the portal lacks, pushes the changed levels, keeps the
snapshot of what the portal took, and ends with :func:`record_sync_outcome`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd

from b2b_pipeline.config.mappings import Mappings
from b2b_pipeline.domain import inventory as rules
from b2b_pipeline.flows.ports import AuditTrail, Erp, Portal, SyncStateStore
from b2b_pipeline.flows.price_sync import ErpProductsResult, check_erp_products
from b2b_pipeline.flows.recording import (
    Clears,
    SyncOutcome,
    audit_events,
    file_exceptions,
    new_exception_count,
    record_sync_outcome,
)

# What each step checks in full on every run (so a problem it no longer finds is resolved).
ERP_STOCK_PROBLEMS: Clears = (
    "inventory",
    frozenset({"INVALID_ERP_RECORD", "UNMAPPED_WAREHOUSE"}),
)
PORTAL_STOCK_PROBLEMS: Clears = ("inventory", frozenset({"PORTAL_REJECTED_RECORD"}))


@dataclass(frozen=True)
class ErpInventoryResult:
    inventory: pd.DataFrame
    held_back: int
    new_exceptions: int = 0


def check_erp_inventory(
    *, erp: Erp, audit: AuditTrail, mappings: Mappings, run_id: str, products: pd.DataFrame
) -> ErpInventoryResult:
    clean, problems = rules.validate_inventory(erp.read_inventory(), mappings, products=products)
    opened = file_exceptions(audit, problems, run_id=run_id, clears=ERP_STOCK_PROBLEMS)
    return ErpInventoryResult(
        inventory=clean, held_back=len(problems), new_exceptions=new_exception_count(opened)
    )


@dataclass(frozen=True)
class StockSyncResult:
    """What the stock step did, as the asset shows it."""

    levels: int
    changed: int
    pushed: int
    refused_by_portal: int
    stock_calls: int
    locations_created: list[str] = field(default_factory=list)
    new_exceptions: int = 0

    @property
    def unchanged(self) -> int:
        return self.levels - self.changed


def sync_stock_levels(
    *,
    portal: Portal,
    audit: AuditTrail,
    state: SyncStateStore,
    mappings: Mappings,
    run_id: str,
    inventory: pd.DataFrame,
) -> StockSyncResult:
    """Push the stock levels that changed since the last push (``inventory``: the clean ERP
    stock rows)."""
    started = datetime.now(UTC)
    created = rules.stock_locations_to_create(portal.list_stock_locations(), mappings)
    for external_id in created:  # a new warehouse mapping: a handful at most
        portal.create_stock_location(rules.stock_location_name(external_id), external_id)

    levels = rules.stock_levels(inventory, mappings)
    changes = rules.stock_changes(levels, state.inventory_current())
    result = portal.batch_update_stock(rules.stock_update_rows(changes))
    refused = rules.refused_stock_rows(result.rejected)
    pushed = rules.accepted_stock(changes, refused)
    state.record_stock_pushed(pushed, run_id)
    opened = record_sync_outcome(
        SyncOutcome(
            data_type="inventory",
            entity="inventory",
            started_at=started,
            events=[
                audit_events(
                    pushed.assign(key=pushed["sku"] + "@" + pushed["stock_location_external_id"]),
                    run_id=run_id,
                    entity="inventory",
                    key="key",
                    action="pushed",
                    detail_columns=["stock_level"],
                )
            ],
            exceptions=rules.refused_stock_exceptions(refused),
            clears=PORTAL_STOCK_PROBLEMS,
            records_failed=len(refused),
            reported_entities=("inventory", "product"),
        ),
        portal=portal,
        audit=audit,
        run_id=run_id,
    )
    return StockSyncResult(
        levels=len(levels),
        changed=len(changes),
        pushed=len(pushed),
        refused_by_portal=len(refused),
        stock_calls=result.calls,
        locations_created=created,
        new_exceptions=new_exception_count(opened),
    )


@dataclass(frozen=True)
class StockSync:
    products: ErpProductsResult
    inventory: ErpInventoryResult
    stock: StockSyncResult


def run_stock_sync(
    *,
    portal: Portal,
    erp: Erp,
    audit: AuditTrail,
    state: SyncStateStore,
    mappings: Mappings,
    run_id: str,
) -> StockSync:
    """The steps of ``inventory_sync_job``, in order, outside Dagster."""
    products = check_erp_products(erp=erp, audit=audit, mappings=mappings, run_id=run_id)
    inventory = check_erp_inventory(
        erp=erp, audit=audit, mappings=mappings, run_id=run_id, products=products.products
    )
    stock = sync_stock_levels(
        portal=portal,
        audit=audit,
        state=state,
        mappings=mappings,
        run_id=run_id,
        inventory=inventory.inventory,
    )
    return StockSync(products=products, inventory=inventory, stock=stock)
