"""Counting what became of every purchase, from the portal, the ERP and the audit file.

A snapshot is read when no run is active. ``posted`` and ``duplicates`` come from the ERP's own
sales orders, ``lost`` from the portal's own purchase list (what a buyer sees), ``queued`` from
the exception queue and ``filtered`` from the pipeline's order tracking (the only record of a
quote that was looked at and left alone). Entries a hostile portal sends without a usable id
are matched to the queue by their content (the exception holds the purchase as received).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Exception states in which a purchase is still held by the queue (approved = awaiting retry).
HELD = ("open", "approved")


@dataclass(frozen=True)
class Snapshot:
    erp_refs: Counter[str]
    queued: frozenset[str]
    queued_payloads: frozenset[str]
    filtered: frozenset[str]
    live: frozenset[str]  # portal purchases of type order, not cancelled
    portal_ids: frozenset[str]
    written_back: frozenset[str]  # portal purchases that carry their ERP order number


@dataclass
class Counts:
    purchases: int = 0
    posted: int = 0
    queued: int = 0
    filtered: int = 0
    duplicates: int = 0
    lost: int = 0
    write_back_pending: int = 0
    posted_and_queued: int = 0

    def add(self, other: Counts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def take_snapshot(sandbox: Any, since: dt.datetime | None = None) -> Snapshot:
    """The systems now; with ``since``, only the portal purchases changed since then (a
    trial's own orders, without reading every earlier trial's again)."""
    from b2b_pipeline.connectors.audit.store import AuditStore
    from b2b_pipeline.connectors.erp.gateway import ErpGateway
    from b2b_pipeline.connectors.sparklayer import purchases as wire
    from b2b_pipeline.connectors.sync_state import SyncState

    erp = ErpGateway(f"sqlite:///{sandbox.erp_path}")
    try:
        orders = erp.read_table("sales_orders")
    finally:
        erp.dispose()
    refs: Counter[str] = Counter(orders["external_ref"].astype(str))

    queued: set[str] = set()
    payloads: set[str] = set()
    filtered: set[str] = set()
    if sandbox.audit_path.exists():
        queue = AuditStore(sandbox.audit_path).exceptions(status=list(HELD))
        queue = queue[queue["entity"] == "order"]
        queued = set(queue["entity_key"].astype(str))
        for payload in queue["payload"].dropna():
            try:
                payloads.add(canonical(json.loads(payload)))
            except (TypeError, ValueError):
                payloads.add(str(payload))
        tracking = SyncState(sandbox.audit_path).order_tracking()
        filtered = set(tracking.loc[tracking["outcome"] == "filtered", "portal_order_id"])

    live, ids, written = set(), set(), set()
    for purchase in sandbox.portal_purchases(since):
        pid = wire.purchase_id(purchase)
        if pid is None:
            continue
        ids.add(pid)
        if wire.purchase_type(purchase) == "order" and not wire.is_cancelled(purchase):
            live.add(pid)
        if wire.internal_id(purchase):
            written.add(pid)
    return Snapshot(
        refs,
        frozenset(queued),
        frozenset(payloads),
        frozenset(filtered),
        frozenset(live),
        frozenset(ids),
        frozenset(written),
    )


def count(snapshot: Snapshot, ids: Iterable[str]) -> Counts:
    """What became of the portal purchases ``ids``."""
    scope = set(ids)
    posted = {i for i in scope if snapshot.erp_refs.get(i, 0) > 0}
    queued = scope & snapshot.queued
    return Counts(
        purchases=len(scope),
        posted=len(posted),
        queued=len(queued),
        filtered=len(scope & snapshot.filtered - posted - queued),
        duplicates=sum(1 for i in scope if snapshot.erp_refs.get(i, 0) > 1),
        lost=len((scope & snapshot.live) - posted - queued),
        write_back_pending=len((posted & snapshot.portal_ids) - snapshot.written_back),
        posted_and_queued=len(posted & queued),
    )


def all_duplicates(snapshot: Snapshot) -> int:
    """``external_ref`` values in the ERP more than once, whatever their origin."""
    return sum(1 for n in snapshot.erp_refs.values() if n > 1)


def all_lost(snapshot: Snapshot) -> int:
    """Live portal orders, of any trial, neither posted nor queued."""
    return len({i for i in snapshot.live if not snapshot.erp_refs.get(i)} - snapshot.queued)


def audit_text_hits(path: Path, needle: str) -> list[str]:
    """``table.column`` of every audit-file column whose text contains ``needle``."""
    import duckdb

    hits = []
    with duckdb.connect(str(path), read_only=True) as connection:
        tables = connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
        ).fetchall()
        for (table,) in tables:
            columns = connection.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ?",
                [table],
            ).fetchall()
            for (column,) in columns:
                found = connection.execute(
                    f'SELECT count(*) FROM "{table}" '
                    f'WHERE contains(CAST("{column}" AS VARCHAR), ?)',
                    [needle],
                ).fetchone()
                if found and found[0]:
                    hits.append(f"{table}.{column}")
    return hits
