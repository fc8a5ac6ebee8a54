"""Buyers at work while the pipeline reads, posts and writes back: confirmations,
cancellations and new orders during intake and during the ERP-number write-back.

A batch of orders, quotes and unconfirmed orders is placed; then, for as long as the run lasts,
a buyer keeps confirming quotes and unconfirmed orders (they become live and must be posted
once), cancelling orders (the cancellation must survive the write-back, which puts the whole
purchase back: issue 10 finding 2) and placing new orders (they must be posted by this run or
the next: the purchase list moves under the reader's feet, issue 10 finding 1). The recovery
runs follow. Besides the table's counts, the notes say how many cancellations the portal no
longer shows (a cancellation overwritten is a defect and fails the row).
"""

from __future__ import annotations

import threading
import time
from random import Random

from benchmarks.reliability.plan import Plan
from benchmarks.reliability.report import Row
from benchmarks.reliability.sandbox import Sandbox
from benchmarks.reliability.tally import count, take_snapshot


def _buyer(
    sandbox: Sandbox,
    rng: Random,
    orders: list[str],
    pending: list[str],
    stop: threading.Event,
    done: dict[str, set[str]],
) -> None:
    """Until ``stop``: one change every few tens of milliseconds, chosen at random, so that the
    changes spread over the whole run (intake, posting, write-back); at most a quarter of the
    orders is cancelled."""
    cancellable = len(orders) // 4
    most_new = len(orders)
    while not stop.is_set():
        action = rng.random()
        if action < 0.35 and pending:
            purchase = pending.pop(rng.randrange(len(pending)))
            if sandbox.change_purchase(purchase, type="order"):
                done["confirmed"].add(purchase)
        elif action < 0.7 and orders and len(done["cancelled"]) < cancellable:
            purchase = orders.pop(rng.randrange(len(orders)))
            if sandbox.change_purchase(purchase, calculated_fulfilment_status="cancelled"):
                done["cancelled"].add(purchase)
        elif len(done["placed"]) < most_new:  # as many new orders as the batch, at most
            done["placed"].update(sandbox.place_orders(1, rng))
        stop.wait(rng.uniform(0.02, 0.08))


def run(plan: Plan) -> list[Row]:
    rng = Random(plan.seed)
    row = Row("buyer confirmations, cancellations and new orders during a run", trials=1)
    started = time.monotonic()
    with Sandbox("buyers") as sandbox:
        sandbox.prepare()
        orders = sandbox.place_orders(plan.orders, rng)
        pending = sandbox.place_orders(plan.orders // 4, rng, types=("quote", "order_unconfirmed"))
        done: dict[str, set[str]] = {"confirmed": set(), "cancelled": set(), "placed": set()}
        stop = threading.Event()
        buyer = threading.Thread(
            target=_buyer,
            args=(sandbox, Random(plan.seed + 1), list(orders), list(pending), stop, done),
            daemon=True,
        )
        initial_pending = list(pending)
        running = sandbox.start("run", "--format", "json")
        buyer.start()
        during = running.wait()
        stop.set()
        buyer.join(60)
        recovered, after = sandbox.recover()
        ids = orders + initial_pending + sorted(done["placed"])
        snapshot = take_snapshot(sandbox)
        counts = count(snapshot, ids)
        # Cancelled on the portal = no longer live although it is still an order.
        still_live = done["cancelled"] & snapshot.live
        leaks = sandbox.secret_leaks()
    row.counts = counts
    row.recovered = int(recovered and counts.lost == 0 and counts.duplicates == 0)
    row.seconds = time.monotonic() - started
    row.notes.append(
        f"during the run (exit {during.returncode}) the buyer confirmed "
        f"{len(done['confirmed'])}, cancelled {len(done['cancelled'])} and placed "
        f"{len(done['placed'])}; {len(after)} recovery run(s), last exit {after[-1].returncode}"
    )
    row.notes.append(f"{len(still_live)} cancellations overwritten (live again on the portal)")
    if still_live:
        row.failed = True
    if leaks:
        row.notes.append(f"the client secret appears in: {', '.join(leaks)}")
        row.failed = True
    return [row]
