"""The simulated portal's data, held in memory with the indexes each request needs.

No request scans all the data: customers and price lists are paged from insertion-ordered id
lists, price rows are a dict per list (``sku -> [(min_quantity, price), ...]``) with a sorted
SKU list rebuilt only on the first read after a change, and purchases keep an index sorted by
``(updated_at, id)`` that ``updated_since`` bisects.

Handlers mutate under :attr:`PortalState.lock` (one lock: every operation is in memory and
short); :class:`ResourceLocks` is the per-resource try-lock behind the API's 409 on concurrent
updates of the same resource.
"""

from __future__ import annotations

import bisect
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from b2b_pipeline.simulator.clock import ChangeClock, parse_timestamp
from b2b_pipeline.simulator.problems import concurrent_update

DEFAULT_LOCATION_EXTERNAL_ID = "default"
FIRST_VISIBLE_NUMBER = 100_001
PURCHASE_LOOKUPS = ("sparklayer", "platform", "internal", "visible")


def new_id() -> str:
    return str(uuid.uuid4())


class PortalState:
    """Customers, groups, price lists and prices, stock, purchases and sync logs."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.version = 0  # bumped on every change; the background saver compares it
        self.clock = ChangeClock()
        self._init_data()

    def clear(self) -> None:
        """Forget every record (``POST /_sim/reset``); the clock keeps running forward."""
        with self.lock:
            self._init_data()
            self.version += 1

    def _init_data(self) -> None:
        self.customers: dict[str, dict[str, Any]] = {}
        self.customer_order: list[str] = []
        self.customer_by_external_id: dict[str, str] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        self.price_lists: dict[str, dict[str, Any]] = {}
        self.price_list_order: list[str] = []
        self.pricing: dict[str, dict[str, list[tuple[int, float]]]] = {}
        self._sorted_skus: dict[str, list[str]] = {}
        self.stock_locations: dict[str, dict[str, Any]] = {}
        self.location_by_external_id: dict[str, str] = {}
        self.stock: dict[tuple[str, str], dict[str, Any]] = {}  # (sku, location id) -> level
        self.purchases: dict[str, dict[str, Any]] = {}
        self.purchase_index: list[tuple[str, str]] = []  # sorted (updated_at, id)
        self.purchase_by_identifier: dict[str, dict[str, str]] = {
            kind: {} for kind in PURCHASE_LOOKUPS if kind != "sparklayer"
        }
        self.next_visible_number = FIRST_VISIBLE_NUMBER
        self.sync_logs: dict[str, dict[str, Any]] = {}
        self.add_stock_location("Default", DEFAULT_LOCATION_EXTERNAL_ID)

    def changed(self) -> str:
        """Mark a change; returns its ``updated_at``."""
        self.version += 1
        return self.clock.tick()

    # -- customers ---------------------------------------------------------------------------
    def find_customer(self, lookup_by: str, identifier: str) -> dict[str, Any] | None:
        if lookup_by == "platform":
            customer_id = self.customer_by_external_id.get(identifier)
            return None if customer_id is None else self.customers[customer_id]
        return self.customers.get(identifier)

    def save_customer(self, customer: dict[str, Any]) -> dict[str, Any]:
        """Insert or fully replace a customer (``id`` set); keeps the external_id index."""
        customer_id = customer["id"]
        previous = self.customers.get(customer_id)
        stamp = self.changed()
        if previous is None:
            self.customer_order.append(customer_id)
            customer["created_at"] = stamp
        else:
            customer["created_at"] = previous["created_at"]
            if previous["external_id"] is not None:
                del self.customer_by_external_id[previous["external_id"]]
        customer["updated_at"] = stamp
        if customer["external_id"] is not None:
            self.customer_by_external_id[customer["external_id"]] = customer_id
        self.customers[customer_id] = customer
        return customer

    # -- price lists -------------------------------------------------------------------------
    def add_price_list(self, price_list: dict[str, Any]) -> None:
        self.changed()
        self.price_lists[price_list["slug"]] = price_list
        self.price_list_order.append(price_list["slug"])
        self.pricing[price_list["slug"]] = {}

    def replace_prices(self, slug: str, rows: list[tuple[str, list[tuple[int, float]]]]) -> None:
        """Replace each sent SKU's breaks; an empty break list removes the SKU."""
        prices = self.pricing[slug]
        sku_set_changed = False
        for sku, breaks in rows:
            if breaks:
                sku_set_changed = sku_set_changed or sku not in prices
                prices[sku] = breaks
            elif prices.pop(sku, None) is not None:
                sku_set_changed = True
        if sku_set_changed:
            self._sorted_skus.pop(slug, None)
        self.changed()

    def sorted_skus(self, slug: str) -> list[str]:
        """The list's SKUs in order, sorted once per change of its SKU set, not per page."""
        skus = self._sorted_skus.get(slug)
        if skus is None:
            skus = sorted(self.pricing[slug])
            self._sorted_skus[slug] = skus
        return skus

    # -- stock -------------------------------------------------------------------------------
    def add_stock_location(self, name: str, external_id: str) -> dict[str, Any]:
        location = {"id": new_id(), "name": name, "external_id": external_id}
        self.stock_locations[location["id"]] = location
        self.location_by_external_id[external_id] = location["id"]
        self.changed()
        return location

    # -- purchases ---------------------------------------------------------------------------
    def find_purchase(self, lookup_by: str, identifier: str) -> dict[str, Any] | None:
        if lookup_by == "sparklayer":
            return self.purchases.get(identifier)
        purchase_id = self.purchase_by_identifier[lookup_by].get(identifier)
        return None if purchase_id is None else self.purchases[purchase_id]

    def next_visible_identifier(self) -> str:
        visible = f"SL-{self.next_visible_number}"
        self.next_visible_number += 1
        return visible

    def save_purchase(self, purchase: dict[str, Any], *, placed: bool = False) -> dict[str, Any]:
        """Insert or fully replace a purchase; bumps ``dates.updated_at`` and the indexes.

        ``purchase`` must be a new dict (with a new ``dates`` dict): stored documents are
        never changed in place, so a response being serialised outside the lock stays whole.
        ``created_at`` (and ``placed_at`` when ``placed``) default to this change's time.
        """
        purchase_id = purchase["id"]
        previous = self.purchases.get(purchase_id)
        if previous is not None:
            self._unindex_purchase(previous)
        stamp = self.changed()
        dates = purchase["dates"]
        dates["updated_at"] = stamp
        if dates["created_at"] is None:
            dates["created_at"] = stamp
        if placed and dates["placed_at"] is None:
            dates["placed_at"] = stamp
        self.purchases[purchase_id] = purchase
        # The new stamp is the latest ever handed out, so the insert lands at the end: O(1).
        bisect.insort(self.purchase_index, (stamp, purchase_id))
        for kind, index in self.purchase_by_identifier.items():
            value = purchase["purchase_identifiers"].get(kind)
            if value is not None:
                index[value] = purchase_id
        return purchase

    def _unindex_purchase(self, purchase: dict[str, Any]) -> None:
        key = (purchase["dates"]["updated_at"], purchase["id"])
        at = bisect.bisect_left(self.purchase_index, key)
        if at < len(self.purchase_index) and self.purchase_index[at] == key:
            del self.purchase_index[at]
        for kind, index in self.purchase_by_identifier.items():
            value = purchase["purchase_identifiers"].get(kind)
            if value is not None and index.get(value) == purchase["id"]:
                del index[value]

    def purchases_page(
        self, updated_since: str | None, offset: int, limit: int
    ) -> list[dict[str, Any]]:
        """Purchases by (updated_at, id), from ``updated_since`` on (inclusive)."""
        start = 0
        if updated_since is not None:
            start = bisect.bisect_left(self.purchase_index, (updated_since, ""))
        window = self.purchase_index[start + offset : start + offset + limit]
        return [self.purchases[purchase_id] for _, purchase_id in window]

    # -- persistence -------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The data to persist, as shallow copies; call under :attr:`lock`.

        Shallow is enough because stored records are replaced, never changed in place, so the
        copies stay consistent while they are written out after the lock is released. Indexes
        are not saved: they are rebuilt on load.
        """
        return {
            "clock_last": self.clock.last.isoformat(),
            "customers": [self.customers[cid] for cid in self.customer_order],
            "groups": dict(self.groups),
            "price_lists": [self.price_lists[slug] for slug in self.price_list_order],
            "pricing": {slug: dict(prices) for slug, prices in self.pricing.items()},
            "stock_locations": list(self.stock_locations.values()),
            "stock": dict(self.stock),
            "purchases": [self.purchases[pid] for _, pid in self.purchase_index],
            "next_visible_number": self.next_visible_number,
            "sync_logs": dict(self.sync_logs),
        }

    @classmethod
    def from_snapshot(cls, data: dict[str, Any]) -> PortalState:
        state = cls()
        state.stock_locations.clear()
        state.location_by_external_id.clear()
        state.clock = ChangeClock(parse_timestamp(data["clock_last"]))
        for customer in data["customers"]:
            state.customers[customer["id"]] = customer
            state.customer_order.append(customer["id"])
            if customer["external_id"] is not None:
                state.customer_by_external_id[customer["external_id"]] = customer["id"]
        state.groups = data["groups"]
        for price_list in data["price_lists"]:
            state.price_lists[price_list["slug"]] = price_list
            state.price_list_order.append(price_list["slug"])
        state.pricing = data["pricing"]
        for location in data["stock_locations"]:
            state.stock_locations[location["id"]] = location
            state.location_by_external_id[location["external_id"]] = location["id"]
        state.stock = data["stock"]
        for purchase in data["purchases"]:  # saved in index order: appends keep it sorted
            state.purchases[purchase["id"]] = purchase
            state.purchase_index.append((purchase["dates"]["updated_at"], purchase["id"]))
            for kind, index in state.purchase_by_identifier.items():
                value = purchase["purchase_identifiers"].get(kind)
                if value is not None:
                    index[value] = purchase["id"]
        state.next_visible_number = data["next_visible_number"]
        state.sync_logs = data["sync_logs"]
        state.version = 0
        return state

    def counts(self) -> dict[str, int]:
        return {
            "customers": len(self.customers),
            "customer_groups": len(self.groups),
            "price_lists": len(self.price_lists),
            "price_rows": sum(len(prices) for prices in self.pricing.values()),
            "stock_locations": len(self.stock_locations),
            "stock_levels": len(self.stock),
            "purchases": len(self.purchases),
            "sync_logs": len(self.sync_logs),
        }


class ResourceLocks:
    """Per-resource try-locks: a second write to a resource already being written gets 409."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._held: set[tuple[str, str]] = set()

    @contextmanager
    def hold(self, *keys: tuple[str, str]) -> Iterator[None]:
        with self._guard:
            busy = next((key for key in keys if key in self._held), None)
            if busy is not None:
                raise concurrent_update(f"{busy[0]} {busy[1]!r}")
            self._held.update(keys)
        try:
            yield
        finally:
            with self._guard:
                self._held.difference_update(keys)
