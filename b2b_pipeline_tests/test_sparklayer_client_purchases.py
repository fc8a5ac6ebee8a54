"""Reading purchases and writing ERP numbers back (contract v2 §5), over real HTTP.

The purchase list is newest first and paged by offsets, so every purchase placed, changed or
deleted while the client pages shifts what the next offset points at. These tests place,
confirm, cancel and delete purchases **between the pages** the client reads (the generator
fetches a page only when the previous one is consumed) and check that every purchase that
stayed in the window comes out exactly once.

Where a test needs the portal to misbehave in a way the simulator will not (ignore the list
filters, serve an entry that is not an object, let a buyer edit a purchase between the
client's read and its write), a small forwarding proxy sits between the client and the real
simulator and changes only that; everything else is the simulator's own answer.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pandas as pd
import pytest
import requests

from b2b_pipeline.connectors.sparklayer.client import SparkLayerClient
from b2b_pipeline.connectors.sparklayer.errors import (
    ConflictError,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
)
from b2b_pipeline.connectors.sparklayer.purchases import purchase_id, purchase_updated_at
from b2b_pipeline_tests.conftest import CLIENT_ID, CLIENT_SECRET, SITE_ID
from b2b_pipeline_tests.test_sparklayer_client import Sim, customer, statuses

PURCHASES = "/api/v1/purchases"
PURCHASE = "/api/v1/purchases/{lookupBy}/{identifier}"
FILTERS = (
    "dates[last_updated][gte]",
    "dates[last_updated][lte]",
    "type",
    "customer_identifiers[sparklayer]",
)


# ------------------------------------------------------------------ helpers and fixtures


class Proxy:
    """A forwarding HTTP proxy in front of the simulator, changing one thing on the way.

    ``query`` rewrites the query parameters sent upstream; ``body`` rewrites a JSON answer
    (method, path, parsed body -> body); ``after`` runs once the upstream answered and before
    the client gets the answer (method, path).
    """

    def __init__(
        self,
        upstream: str,
        *,
        query: Callable[[list[tuple[str, str]]], list[tuple[str, str]]] | None = None,
        body: Callable[[str, str, Any], Any] | None = None,
        after: Callable[[str, str], None] | None = None,
    ) -> None:
        proxy = self
        self.upstream = upstream
        self.query = query
        self.body = body
        self.after = after
        self.http = requests.Session()

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep the test output quiet
                pass

            def _forward(self) -> None:
                proxy.forward(self)

            do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def forward(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        params = parse_qsl(parts.query, keep_blank_values=True)
        if self.query is not None:
            params = self.query(params)
        length = int(handler.headers.get("Content-Length") or 0)
        sent = handler.rfile.read(length) if length else None
        headers = {
            name: value
            for name, value in handler.headers.items()
            if name.lower() in ("authorization", "site-id", "content-type", "accept", "user-agent")
        }
        answer = self.http.request(
            handler.command,
            self.upstream + parts.path + ("?" + urlencode(params) if params else ""),
            data=sent,
            headers=headers,
            timeout=10,
        )
        content = answer.content
        if self.body is not None and answer.ok and content:
            content = json.dumps(self.body(handler.command, parts.path, answer.json())).encode()
        if self.after is not None:
            self.after(handler.command, parts.path)
        handler.send_response(answer.status_code)
        for name in ("Content-Type", "Retry-After"):
            if name in answer.headers:
                handler.send_header(name, answer.headers[name])
        handler.send_header("Content-Length", str(len(content)))
        handler.end_headers()
        handler.wfile.write(content)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.http.close()


@pytest.fixture
def sim(simulator: Any) -> Iterator[Sim]:
    controls = Sim(simulator.url)
    yield controls
    controls.http.close()


@pytest.fixture
def through_proxy(simulator: Any) -> Iterator[Callable[..., SparkLayerClient]]:
    """Clients that reach the simulator through a Proxy configured by the test."""
    opened: list[tuple[Proxy, SparkLayerClient]] = []

    def make(**changes: Any) -> SparkLayerClient:
        proxy = Proxy(simulator.url, **changes)
        client = SparkLayerClient(
            proxy.url,
            SITE_ID,
            CLIENT_ID,
            CLIENT_SECRET,
            requests_per_second=1000.0,
            backoff_max=0.05,
        )
        opened.append((proxy, client))
        return client

    yield make
    for proxy, client in opened:
        client.close()
        proxy.close()


def without_filters(params: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A server that ignores every list filter: only limit and offset reach the simulator."""
    return [(name, value) for name, value in params if name not in FILTERS]


def ids(purchases: list[Any]) -> list[str | None]:
    return [purchase_id(p) for p in purchases]


def place(sim: Sim, count: int, account: str = "ACC-1", **order: Any) -> list[str]:
    """``count`` purchases placed by ``account``, oldest first, as their SparkLayer ids."""
    return [purchase_id(sim.order(account, **order)) or "" for _ in range(count)]


@pytest.fixture
def buyer(portal: SparkLayerClient) -> dict[str, Any]:
    return portal.put_customer(customer("ACC-1"))


def list_reads(sim: Sim) -> int:
    return len(sim.log(PURCHASES, "GET"))


# ------------------------------------------------------------------ listing


def test_purchases_come_newest_first_each_once_across_overlapping_pages(
    portal: SparkLayerClient, sim: Sim, buyer: dict[str, Any]
) -> None:
    placed = place(sim, 620)
    sim.clear_calls()

    seen = ids(list(portal.iter_purchases(limit=250)))

    assert seen == placed[::-1]  # newest first, each once although the pages overlap
    # Offsets 0, 238 and 476 (pages overlap by 12); the last page is short. Then one read of
    # the head for purchases placed while the walk paged (none here).
    assert [row["status"] for row in sim.log(PURCHASES, "GET")] == [200] * 4


def test_one_page_is_one_call_with_nothing_read_again(
    portal: SparkLayerClient, sim: Sim, buyer: dict[str, Any]
) -> None:
    placed = place(sim, 3)
    sim.clear_calls()

    assert ids(list(portal.iter_purchases())) == placed[::-1]
    assert list_reads(sim) == 1  # a single page is one consistent read: no head re-read


def test_the_window_type_and_customer_are_sent_as_the_portals_filters(
    portal: SparkLayerClient, sim: Sim, buyer: dict[str, Any]
) -> None:
    other = portal.put_customer(customer("ACC-2"))
    early = place(sim, 4)
    quotes = place(sim, 2, purchase_type="quote")
    theirs = place(sim, 2, account="ACC-2")
    late = place(sim, 4)
    everything = list(portal.iter_purchases())
    by_id = {purchase_id(p): p for p in everything}
    gte = purchase_updated_at(by_id[early[2]])
    lte = purchase_updated_at(by_id[late[1]])
    assert gte is not None and lte is not None
    sim.clear_calls()

    window = ids(list(portal.iter_purchases(updated_gte=gte, updated_lte=lte, limit=20)))
    orders = ids(list(portal.iter_purchases(purchase_type="order", customer_id=buyer["id"])))
    quoted = ids(list(portal.iter_purchases(purchase_type="quote")))
    acc2 = ids(list(portal.iter_purchases(customer_id=other["id"])))

    assert window == (early[2:] + quotes + theirs + late[:2])[::-1]  # both bounds inclusive
    assert orders == (early + late)[::-1]
    assert quoted == quotes[::-1]
    assert acc2 == theirs[::-1]
    # Each answer was one short page: the portal filtered, so the client sent the filters.
    assert list_reads(sim) == 4


def test_a_server_that_ignores_the_filters_gives_the_same_purchases(
    portal: SparkLayerClient,
    sim: Sim,
    buyer: dict[str, Any],
    through_proxy: Callable[..., SparkLayerClient],
) -> None:
    ignoring = through_proxy(query=without_filters)
    other = portal.put_customer(customer("ACC-2"))
    place(sim, 30)
    place(sim, 5, purchase_type="quote")
    place(sim, 5, account="ACC-2")
    recent = place(sim, 10)
    everything = list(portal.iter_purchases())
    newest_first = ids(everything)
    gte = purchase_updated_at(everything[newest_first.index(recent[0])])
    lte = purchase_updated_at(everything[newest_first.index(recent[-3])])
    queries: list[dict[str, Any]] = [
        {"updated_gte": gte},
        {"updated_gte": gte, "updated_lte": lte},
        {"purchase_type": "quote"},
        {"customer_id": other["id"]},
        {"purchase_type": "order", "customer_id": buyer["id"], "updated_lte": lte},
    ]

    for query in queries:
        expected = ids(list(portal.iter_purchases(**query, limit=8)))
        assert expected, query
        assert ids(list(ignoring.iter_purchases(**query, limit=8))) == expected, query


def test_paging_stops_at_the_first_page_older_than_the_window(
    sim: Sim, buyer: dict[str, Any], through_proxy: Callable[..., SparkLayerClient]
) -> None:
    ignoring = through_proxy(query=without_filters)
    place(sim, 100)
    recent = place(sim, 6)
    newest = list(ignoring.iter_purchases(limit=10))
    gte = purchase_updated_at(newest[len(recent) - 1])
    sim.clear_calls()

    assert ids(list(ignoring.iter_purchases(updated_gte=gte, limit=10))) == recent[::-1]
    assert list_reads(sim) == 1  # the first page already reached older purchases: no more


def test_purchases_placed_and_changed_while_the_client_pages_are_each_read_once(
    portal: SparkLayerClient, sim: Sim, buyer: dict[str, Any]
) -> None:
    # 45 purchases before the read: orders, unconfirmed orders and quotes, interleaved.
    before: list[str] = []
    unconfirmed: list[str] = []
    quotes: list[str] = []
    for _ in range(15):
        before += place(sim, 1)
        unconfirmed += place(sim, 1, purchase_type="order_unconfirmed")
        quotes += place(sim, 1, purchase_type="quote")
        before += [unconfirmed[-1], quotes[-1]]
    orders = [pid for pid in before if pid not in unconfirmed and pid not in quotes]
    placed_during: list[str] = []
    changed_during: list[str] = []
    seen: list[Any] = []

    reader = portal.iter_purchases(limit=5)
    for step, purchase in enumerate(reader):
        seen.append(purchase)
        if step >= 24:
            continue  # the buyers stop; the client finishes its walk
        # Between every two entries (so between every two pages): a new order, and a change
        # to a purchase the client has not read yet (the oldest ones), which moves it to the
        # head of the list, above the client.
        placed_during += place(sim, 1)
        if step % 3 == 0:
            target = unconfirmed.pop(0)
            sim.change(target, type="order")
        elif step % 3 == 1:
            target = quotes.pop(0)
            sim.change(target, type="order")
        else:
            target = orders.pop(0)
            sim.change(target, calculated_fulfilment_status="cancelled")
        changed_during.append(target)

    counted = Counter(ids(seen))
    assert [pid for pid, times in counted.items() if times > 1] == []  # none twice
    assert set(before) <= set(counted)  # none of those there at the start is lost...
    assert set(placed_during) <= set(counted)  # ...nor any placed while it paged
    assert len(counted) == len(before) + len(placed_during)
    # Changed before the client reached them: read in their changed version.
    by_id = {purchase_id(p): p for p in seen}
    assert all(by_id[pid]["type"] == "order" for pid in changed_during)


def test_purchases_deleted_while_the_client_pages_never_hide_the_others(
    portal: SparkLayerClient, sim: Sim, buyer: dict[str, Any]
) -> None:
    placed = place(sim, 60)
    deleted: list[str] = []
    seen: list[Any] = []
    sim.clear_calls()

    for step, purchase in enumerate(portal.iter_purchases(limit=6)):
        seen.append(purchase)
        if step < 12:
            # Purchases the client has already read vanish above it: the list shifts up under
            # the reader, so the next offset would skip purchases it has not read yet.
            for pid in ids(seen):
                if pid not in deleted and len(deleted) < 2 * (step + 1):
                    sim.delete(pid or "")
                    deleted.append(pid or "")
        if step == 20:
            # And one it has not read yet: it is simply gone.
            gone = next(pid for pid in placed[::-1] if pid not in ids(seen))
            sim.delete(gone)
            deleted.append(gone)

    counted = Counter(ids(seen))
    assert [pid for pid, times in counted.items() if times > 1] == []
    assert {pid for pid in placed if pid not in deleted} <= set(counted)
    reads = len(sim.log(PURCHASES, "GET"))
    # A walk without deletions takes 12 reads (60 purchases, 5 new per page) and a head read;
    # here the client had to step back and read again.
    assert reads > 13


def test_entries_that_are_not_objects_are_kept_once_and_stop_nothing(
    sim: Sim, buyer: dict[str, Any], through_proxy: Callable[..., SparkLayerClient]
) -> None:
    placed = place(sim, 20)
    broken = {placed[5]: "not a purchase", placed[12]: [1, 2, 3]}
    undated = placed[15]

    def corrupt(method: str, path: str, body: Any) -> Any:
        if method != "GET" or path != PURCHASES:
            return body
        page = []
        for entry in body:
            pid = purchase_id(entry)
            if pid in broken:
                page.append(broken[pid])
            elif pid == undated:
                page.append({key: value for key, value in entry.items() if key != "dates"})
            else:
                page.append(entry)
        return page

    client = through_proxy(body=corrupt)
    window_start = datetime.now() - timedelta(days=1)

    seen = list(client.iter_purchases(updated_gte=window_start, limit=4))

    assert seen.count("not a purchase") == 1
    assert seen.count([1, 2, 3]) == 1
    real = [pid for pid in ids(seen) if pid is not None]
    assert sorted(real) == sorted(pid for pid in placed if pid not in broken)  # undated kept
    assert len(seen) == len(placed)


def test_a_limit_below_two_is_refused(portal: SparkLayerClient) -> None:
    with pytest.raises(ValueError, match="at least 2"):
        portal.iter_purchases(limit=1)
    with pytest.raises(ValueError):
        portal.iter_purchases(limit=501)


# ------------------------------------------------------------------ write-back


def purchase_calls(sim: Sim) -> list[tuple[str, int]]:
    return [(row["method"], row["status"]) for row in sim.log(PURCHASE)]


def test_write_back_keeps_the_purchase_whole(
    portal: SparkLayerClient, sim: Sim, buyer: dict[str, Any]
) -> None:
    placed = sim.order("ACC-1", quantity=4, customer_reference="PO-4471")
    pid = purchase_id(placed) or ""
    # A purchase as rich as the docs show it: custom fields, accounting files, a field the
    # pipeline does not know, and more than one package.
    enriched = portal.put_purchase(
        {
            **placed,
            "custom_fields": [{"key": "delivery_slot", "value": "AM"}],
            "accounting_files": [{"name": "proforma.pdf", "url": "https://example.com/p.pdf"}],
            "gift_message": "Happy new shop!",
            "packages": placed["packages"] * 2,
        }
    )
    sim.clear_calls()

    written = portal.set_internal_identifier(pid, "SO-1001")
    calls = sim.log(PURCHASE)

    after = portal.get_purchase(pid)
    assert after == written
    assert after["purchase_identifiers"] == {
        **enriched["purchase_identifiers"],
        "internal": "SO-1001",
    }
    for kept in (
        "type",
        "packages",
        "custom_fields",
        "accounting_files",
        "gift_message",
        "customer_reference",
        "customer_identifiers",
        "payment_method",
        "calculated_total",
        "calculated_fulfilment_status",
    ):
        assert after[kept] == enriched[kept], kept
    assert after["dates"]["created_at"] == enriched["dates"]["created_at"]
    assert after["revision_date"] != enriched["revision_date"]  # saved once more
    # Two calls, and the PUT by SparkLayer id (a PUT by internal would create on a miss).
    [get, put] = calls
    assert (get["method"], put["method"], put["status"]) == ("GET", "PUT", 200)
    assert put["path"] == f"/api/v1/purchases/sparklayer/{pid}"


def test_a_buyers_cancellation_before_the_write_back_is_not_overwritten(
    portal: SparkLayerClient, sim: Sim, buyer: dict[str, Any]
) -> None:
    pid = purchase_id(sim.order("ACC-1")) or ""
    [read_at_intake] = list(portal.iter_purchases())
    sim.change(pid, calculated_fulfilment_status="cancelled")  # after intake, before write-back

    written = portal.set_internal_identifier(pid, "SO-1002")

    assert read_at_intake["calculated_fulfilment_status"] == "processing"
    assert written["calculated_fulfilment_status"] == "cancelled"
    assert written["purchase_identifiers"]["internal"] == "SO-1002"


def test_a_buyers_edit_between_the_read_and_the_write_is_kept_by_reading_again(
    sim: Sim, buyer: dict[str, Any], through_proxy: Callable[..., SparkLayerClient]
) -> None:
    quote = purchase_id(sim.order("ACC-1", purchase_type="quote")) or ""
    edited: list[str] = []

    def buyer_confirms_after_the_first_read(method: str, path: str) -> None:
        # The client already has the answer to its GET in flight: the quote as it was. The
        # buyer confirms it before the client's PUT arrives (a real race, made deterministic).
        if method == "GET" and path.endswith(quote) and not edited:
            sim.change(quote, type="order")
            edited.append(quote)

    client = through_proxy(after=buyer_confirms_after_the_first_read)
    sim.clear_calls()

    written = client.set_internal_identifier(quote, "SO-1003")

    assert written["type"] == "order"  # the buyer's confirmation survived
    assert written["purchase_identifiers"]["internal"] == "SO-1003"
    # The stale write was refused by revision (409), read again and redone.
    assert purchase_calls(sim) == [("GET", 200), ("PUT", 409), ("GET", 200), ("PUT", 200)]


def test_internal_identifier_rereads_on_conflict_and_skips_a_write_it_does_not_need(
    portal: SparkLayerClient, sim: Sim, buyer: dict[str, Any]
) -> None:
    pid = purchase_id(sim.order("ACC-1")) or ""
    sim.fail_next("PUT", PURCHASE, 409)

    updated = portal.set_internal_identifier(pid, "10002")
    again = portal.set_internal_identifier(pid, "10002")

    assert updated["purchase_identifiers"]["internal"] == "10002"
    assert again["purchase_identifiers"]["internal"] == "10002"
    # read, conflicting write, re-read, write; then one read and no write for the no-op.
    assert purchase_calls(sim) == [
        ("GET", 200),
        ("PUT", 409),
        ("GET", 200),
        ("PUT", 200),
        ("GET", 200),
    ]


def test_a_purchase_that_keeps_conflicting_raises_after_the_bounded_rereads(
    portal: SparkLayerClient, sim: Sim, buyer: dict[str, Any]
) -> None:
    pid = purchase_id(sim.order("ACC-1")) or ""
    sim.fail_next("PUT", PURCHASE, 409, count=10)

    with pytest.raises(ConflictError) as clash:
        portal.set_internal_identifier(pid, "10003")

    assert not clash.value.retryable
    assert pid in str(clash.value) and "10003" in str(clash.value)
    assert purchase_calls(sim) == [("GET", 200), ("PUT", 409)] * 4
    assert portal.get_purchase(pid)["purchase_identifiers"]["internal"] == ""


@pytest.mark.parametrize(
    ("status", "error_type"), [(400, InvalidRequestError), (403, ForbiddenError)]
)
def test_a_refused_write_back_raises_at_once_and_is_not_retried(
    portal: SparkLayerClient, sim: Sim, buyer: dict[str, Any], status: int, error_type: type
) -> None:
    pid = purchase_id(sim.order("ACC-1")) or ""
    sim.fail_next("PUT", PURCHASE, status, count=3)

    with pytest.raises(error_type):
        portal.set_internal_identifier(pid, "10004")

    assert purchase_calls(sim) == [("GET", 200), ("PUT", status)]


def test_the_write_back_of_an_unknown_purchase_never_creates_one(
    portal: SparkLayerClient, sim: Sim
) -> None:
    with pytest.raises(NotFoundError):
        portal.set_internal_identifier("7b0e5a4e-0000-4000-8000-000000000000", "10005")

    assert purchase_calls(sim) == [("GET", 404)]
    assert statuses(sim.log(PURCHASES)) == []


def test_an_erp_number_already_on_another_purchase_raises_at_once(
    portal: SparkLayerClient, sim: Sim, buyer: dict[str, Any]
) -> None:
    first, second = place(sim, 2)
    portal.set_internal_identifier(first, "SO-2001")
    sim.clear_calls()

    with pytest.raises(ConflictError) as clash:
        portal.set_internal_identifier(second, "SO-2001")

    assert clash.value.already_exists and not clash.value.retryable
    assert purchase_calls(sim) == [("GET", 200), ("PUT", 409)]  # no re-read: it cannot help


def test_one_purchase_dated_out_of_order_does_not_end_the_walk_early() -> None:
    """Regression (reliability suite, 10,000 hostile purchases): an entry whose time is far
    older than its place in the list stopped the walk at its page, and the 4,000 purchases
    further down the window were never read by any run."""
    from b2b_pipeline.connectors.sparklayer.client import PurchaseWindow, _PurchaseReader

    start = datetime(2026, 12, 3, 10, 0)
    entries = [
        {
            "purchase_identifiers": {"sparklayer": f"p-{n:03d}"},
            "dates": {"updated_at": (start + timedelta(seconds=n)).isoformat() + "Z"},
        }
        for n in range(60)
    ][::-1]  # newest first, as the portal lists them
    entries[4]["dates"]["updated_at"] = "2001-01-01T00:00:00Z"  # damaged, on the first page
    fetched: list[int] = []

    def fetch(offset: int) -> list[Any]:
        fetched.append(offset)
        return entries[offset : offset + 10]

    window = PurchaseWindow(updated_gte=pd.Timestamp(start + timedelta(seconds=20), tz="UTC"))
    read = ids(list(_PurchaseReader(fetch, 10, window).read()))

    assert read == [f"p-{n:03d}" for n in range(59, 19, -1) if n != 55]
    assert len(fetched) <= 6  # it still stops once the list has gone below the window
