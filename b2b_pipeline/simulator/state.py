"""The simulated portal's data, held in memory with the indexes each request needs.

No request scans all the data: customers and price lists are paged from insertion-ordered id
lists; customers are found by id, ``external_id`` or email through dicts; price rows are a dict
per list (``sku -> [(min_quantity, price), ...]``) with a sorted SKU list rebuilt only on the
first read after a change, and a count of the lists pricing each SKU (the 50,000-product limit
is then a dict lookup); purchases keep an index sorted by ``(updated_at, sparklayer id)``,
oldest first, plus one such index per customer. The list endpoint serves newest first by
walking an index from its end, so ``dates[last_updated][gte|lte]`` are bisects and a page costs
the page (plus the purchases a ``type`` or ``dates[placed]`` filter skips), not the whole list.

Handlers mutate under :attr:`PortalState.lock` (one lock: every operation is in memory and
short); :class:`ResourceLocks` is the per-resource try-lock behind the API's 409 on concurrent
updates of the same resource.
"""

from __future__ import annotations

import bisect
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from b2b_pipeline.simulator.clock import ChangeClock, parse_timestamp
from b2b_pipeline.simulator.problems import concurrent_update

DEFAULT_LOCATION_EXTERNAL_ID = "default"
FIRST_VISIBLE_NUMBER = 100_001
PURCHASE_LOOKUPS = ("sparklayer", "platform", "internal", "visible")
# Lookups with their own index; ``sparklayer`` is the key of ``purchases`` itself.
_INDEXED_PURCHASE_LOOKUPS = ("platform", "internal", "visible")

# An entry of a purchase index: (dates.updated_at, sparklayer id); the stamps sort as text.
IndexKey = tuple[str, str]
Breaks = list[tuple[int, float]]


def new_id() -> str:
    return str(uuid.uuid4())


def purchase_key(purchase: dict[str, Any]) -> str:
    """The id of a stored purchase: there is no top-level ``id`` on a v2 purchase."""
    return purchase["purchase_identifiers"]["sparklayer"]


def email_key(email: str | None) -> str | None:
    """Emails are unique regardless of case, as a sign-in address is."""
    return email.casefold() if email else None


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
        self.customer_by_email: dict[str, str] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        self.price_lists: dict[str, dict[str, Any]] = {}
        self.price_list_order: list[str] = []
        self.pricing: dict[str, dict[str, Breaks]] = {}
        self.lists_pricing_sku: dict[str, int] = {}  # sku -> number of lists that price it
        self._sorted_skus: dict[str, list[str]] = {}
        self.stock_locations: dict[str, dict[str, Any]] = {}
        self.location_by_external_id: dict[str, str] = {}
        self.stock: dict[tuple[str, str], dict[str, Any]] = {}  # (sku, location id) -> level
        self.purchases: dict[str, dict[str, Any]] = {}
        self.purchase_index: list[IndexKey] = []  # sorted, oldest first
        self.purchases_by_customer: dict[str, list[IndexKey]] = {}  # same, per customer
        self.purchase_by_identifier: dict[str, dict[str, str]] = {
            kind: {} for kind in _INDEXED_PURCHASE_LOOKUPS
        }
        self.transactions: dict[str, list[dict[str, Any]]] = {}  # purchase id -> transactions
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
        elif lookup_by == "email":
            customer_id = self.customer_by_email.get(email_key(identifier) or "")
        else:
            customer_id = identifier
        return None if customer_id is None else self.customers.get(customer_id)

    def save_customer(self, customer: dict[str, Any]) -> dict[str, Any]:
        """Insert or fully replace a customer (``id`` set); keeps the lookup indexes."""
        customer_id = customer["id"]
        previous = self.customers.get(customer_id)
        stamp = self.changed()
        if previous is None:
            self.customer_order.append(customer_id)
            customer["created_at"] = stamp
        else:
            customer["created_at"] = previous["created_at"]
            self._unindex_customer(previous)
        customer["updated_at"] = stamp
        if customer["external_id"] is not None:
            self.customer_by_external_id[customer["external_id"]] = customer_id
        if customer["email"]:
            self.customer_by_email[email_key(customer["email"]) or ""] = customer_id
        self.customers[customer_id] = customer
        return customer

    def delete_customer(self, customer_id: str) -> None:
        customer = self.customers.pop(customer_id)
        self._unindex_customer(customer)
        # Deleting is rare (tests, clean-ups); one pass over the order list is acceptable here.
        self.customer_order.remove(customer_id)
        self.changed()

    def _unindex_customer(self, customer: dict[str, Any]) -> None:
        if customer["external_id"] is not None:
            self.customer_by_external_id.pop(customer["external_id"], None)
        if customer["email"]:
            self.customer_by_email.pop(email_key(customer["email"]) or "", None)

    # -- price lists -------------------------------------------------------------------------
    def add_price_list(self, price_list: dict[str, Any]) -> None:
        self.changed()
        self.price_lists[price_list["slug"]] = price_list
        self.price_list_order.append(price_list["slug"])
        self.pricing[price_list["slug"]] = {}

    def new_priced_skus(self, rows: list[tuple[str, str, Breaks]]) -> int:
        """How many SKUs priced by no list yet these ``(slug, sku, breaks)`` rows would add.

        Removals in the same call are not credited, so the check is conservative by at most
        one batch (500 SKUs) near the 50,000-product limit.
        """
        return len({sku for _, sku, breaks in rows if breaks and sku not in self.lists_pricing_sku})

    def replace_prices(self, slug: str, rows: list[tuple[str, Breaks]]) -> None:
        """Replace each sent SKU's breaks; an empty break list removes the SKU's prices."""
        prices = self.pricing[slug]
        counts = self.lists_pricing_sku
        sku_set_changed = False
        for sku, breaks in rows:
            if breaks:
                if sku not in prices:
                    sku_set_changed = True
                    counts[sku] = counts.get(sku, 0) + 1
                prices[sku] = breaks
            elif prices.pop(sku, None) is not None:
                sku_set_changed = True
                counts[sku] -= 1
                if not counts[sku]:
                    del counts[sku]
        if sku_set_changed:
            self._sorted_skus.pop(slug, None)
        self.changed()

    def customer_price_lists(self, customer: dict[str, Any]) -> list[tuple[str, dict[str, Breaks]]]:
        """The customer's lists in the customer's order, as the portal's price rule reads them."""
        return [
            (slug, self.pricing[slug]) for slug in customer["price_lists"] if slug in self.pricing
        ]

    def sorted_skus(self, slug: str) -> list[str]:
        """The list's SKUs in order, sorted once per change of its SKU set, not per read."""
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
        """Insert or fully replace a purchase; bumps ``updated_at``, ``revision_date``, indexes.

        ``purchase`` must be a new dict (with a new ``dates`` dict): stored documents are
        never changed in place, so a response being serialised outside the lock stays whole.
        ``created_at`` (and ``placed_at`` when ``placed``) default to this change's time.
        """
        purchase_id = purchase_key(purchase)
        previous = self.purchases.get(purchase_id)
        if previous is not None:
            self._unindex_purchase(previous)
        stamp = self.changed()
        dates = purchase["dates"]
        dates["updated_at"] = stamp
        purchase["revision_date"] = stamp
        if not dates.get("created_at"):
            dates["created_at"] = stamp
        if placed and not dates.get("placed_at"):
            dates["placed_at"] = stamp
        self.purchases[purchase_id] = purchase
        self._index_purchase(purchase)
        return purchase

    def delete_purchase(self, purchase_id: str) -> None:
        self._unindex_purchase(self.purchases.pop(purchase_id))
        self.transactions.pop(purchase_id, None)
        self.changed()

    def add_transaction(self, purchase_id: str, transaction: dict[str, Any]) -> None:
        self.transactions.setdefault(purchase_id, []).append(transaction)
        self.changed()

    def _index_purchase(self, purchase: dict[str, Any]) -> None:
        key = (purchase["dates"]["updated_at"], purchase_key(purchase))
        # The stamp is the latest ever handed out, so each insort lands at the end: O(1).
        bisect.insort(self.purchase_index, key)
        customer_id = purchase["customer_identifiers"]["sparklayer"]
        bisect.insort(self.purchases_by_customer.setdefault(customer_id, []), key)
        for kind, index in self.purchase_by_identifier.items():
            value = purchase["purchase_identifiers"].get(kind)
            if value:
                index[value] = key[1]

    def _unindex_purchase(self, purchase: dict[str, Any]) -> None:
        key = (purchase["dates"]["updated_at"], purchase_key(purchase))
        _remove_sorted(self.purchase_index, key)
        customer_id = purchase["customer_identifiers"]["sparklayer"]
        by_customer = self.purchases_by_customer.get(customer_id)
        if by_customer is not None:
            _remove_sorted(by_customer, key)
        for kind, index in self.purchase_by_identifier.items():
            value = purchase["purchase_identifiers"].get(kind)
            if value and index.get(value) == key[1]:
                del index[value]

    def purchases_page(
        self,
        *,
        updated_from: str | None,
        updated_to: str | None,
        customer_id: str | None,
        keep: Callable[[dict[str, Any]], bool] | None,
        newest_first: bool,
        offset: int,
        limit: int,
    ) -> list[dict[str, Any]]:
        """One page of purchases by ``(updated_at, id)``, newest or oldest first.

        ``updated_from``/``updated_to`` are inclusive bounds in the stored stamp form; ``keep``
        is the filter that no index answers (type, placed dates), applied while walking.
        """
        index = (
            self.purchase_index
            if customer_id is None
            else self.purchases_by_customer.get(customer_id, [])
        )
        start = 0 if updated_from is None else bisect.bisect_left(index, (updated_from, ""))
        # Every id sorts below "\uffff", so this bound keeps each purchase stamped updated_to.
        stop = (
            len(index) if updated_to is None else bisect.bisect_right(index, (updated_to, "\uffff"))
        )
        if keep is None:
            if newest_first:
                window = index[max(start, stop - offset - limit) : max(start, stop - offset)]
                window.reverse()
            else:
                window = index[start + offset : min(stop, start + offset + limit)]
            return [self.purchases[purchase_id] for _, purchase_id in window]
        positions = range(stop - 1, start - 1, -1) if newest_first else range(start, stop)
        page: list[dict[str, Any]] = []
        skipped = 0
        for position in positions:
            purchase = self.purchases[index[position][1]]
            if not keep(purchase):
                continue
            if skipped < offset:
                skipped += 1
                continue
            page.append(purchase)
            if len(page) == limit:
                break
        return page

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
            "transactions": {pid: list(items) for pid, items in self.transactions.items()},
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
            if customer["email"]:
                state.customer_by_email[email_key(customer["email"]) or ""] = customer["id"]
        state.groups = data["groups"]
        for price_list in data["price_lists"]:
            state.price_lists[price_list["slug"]] = price_list
            state.price_list_order.append(price_list["slug"])
        state.pricing = data["pricing"]
        for prices in state.pricing.values():
            for sku in prices:
                state.lists_pricing_sku[sku] = state.lists_pricing_sku.get(sku, 0) + 1
        for location in data["stock_locations"]:
            state.stock_locations[location["id"]] = location
            state.location_by_external_id[location["external_id"]] = location["id"]
        state.stock = data["stock"]
        for purchase in data["purchases"]:  # saved in index order: each insort is an append
            state.purchases[purchase_key(purchase)] = purchase
            state._index_purchase(purchase)
        state.transactions = data["transactions"]
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
            "priced_skus": len(self.lists_pricing_sku),
            "stock_locations": len(self.stock_locations),
            "stock_levels": len(self.stock),
            "purchases": len(self.purchases),
            "transactions": sum(len(items) for items in self.transactions.values()),
            "sync_logs": len(self.sync_logs),
        }


def _remove_sorted(index: list[IndexKey], key: IndexKey) -> None:
    at = bisect.bisect_left(index, key)
    if at < len(index) and index[at] == key:
        del index[at]


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
