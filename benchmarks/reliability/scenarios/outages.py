"""An ERP outage and a portal outage in the middle of a run, and the runs after them.

- **ERP locked**: another process takes the SQLite ERP's write lock (``BEGIN IMMEDIATE``, as
  a long batch job in the ERP would) half way through a run (its length measured first on a
  batch of the same size), before the order intake posts, and holds it for
  ``erp_lock_seconds`` (90 s in the full suite: three times the gateway's 30 s busy wait).
  Half way through the outage a second run starts, as the schedules would start one. When
  the lock is released, plain runs follow.
- **Portal gone**: the simulator is stopped (SIGTERM, state saved) during the order intake
  or its write-back (60-85% into the run), a run is started while it is down, and it comes
  back ``portal_outage_seconds`` later.

Each row has its own sandbox, so that the suite runs them side by side (most of either is
waiting for the outage to end).

Issue 10 finding 5 reported the run after either outage exiting 1 with 200 live orders neither
posted nor queued; these rows reproduce that sequence.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from functools import partial
from random import Random

from benchmarks.reliability.plan import Plan
from benchmarks.reliability.report import Row
from benchmarks.reliability.sandbox import Outcome, Sandbox, in_own_sandbox
from benchmarks.reliability.tally import count, take_snapshot


class ErpWriteLock:
    """Holds the SQLite ERP's write lock from another connection (another writer)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._held = threading.Event()
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._hold, daemon=True)

    def _hold(self) -> None:
        connection = sqlite3.connect(self._path, timeout=60, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            self._held.set()
            self._release.wait()
            connection.execute("ROLLBACK")
        finally:
            connection.close()

    def take(self) -> None:
        self._thread.start()
        if not self._held.wait(60):
            raise RuntimeError("could not take the ERP's write lock in 60 s")

    def release(self) -> None:
        self._release.set()
        self._thread.join(30)


def _describe(outcomes: list[Outcome]) -> str:
    """Each run's exit status, with the last line it printed when it failed."""
    described = []
    for outcome in outcomes:
        text = f"exit {outcome.returncode}"
        if outcome.returncode and outcome.stderr.strip():
            text += f" ({outcome.stderr.strip().splitlines()[-1][:200]})"
        described.append(text)
    return ", ".join(described)


def erp_locked(plan: Plan, sandbox: Sandbox, rng: Random, span: float) -> Row:
    row = Row(f"ERP locked by another writer for {plan.erp_lock_seconds:.0f} s", trials=1)
    started = time.monotonic()
    ids = sandbox.place_orders(plan.orders, rng)
    first = sandbox.start("run", "--format", "json")
    # Into the order intake (the master-data steps only read the ERP), before its posting.
    time.sleep(rng.uniform(0.4, 0.6) * span)
    lock = ErpWriteLock(str(sandbox.erp_path))
    lock.take()
    locked_at = time.monotonic()
    time.sleep(plan.erp_lock_seconds / 2)
    second = sandbox.start("run", "--format", "json")
    time.sleep(max(0.0, plan.erp_lock_seconds - (time.monotonic() - locked_at)))
    lock.release()
    during = [first.wait(), second.wait()]
    recovered, after = sandbox.recover()
    counts = count(take_snapshot(sandbox), ids)
    row.counts = counts
    row.recovered = int(recovered and counts.lost == 0 and counts.duplicates == 0)
    row.seconds = time.monotonic() - started
    row.notes.append(f"runs during the outage: {_describe(during)}; after it: {_describe(after)}")
    return row


def portal_gone(plan: Plan, sandbox: Sandbox, rng: Random, span: float) -> Row:
    row = Row(f"portal gone for {plan.portal_outage_seconds:.0f} s mid-run", trials=1)
    started = time.monotonic()
    ids = sandbox.place_orders(plan.orders, rng)
    first = sandbox.start("run", "--format", "json")
    # During the order intake or its write-back, after the master-data steps.
    time.sleep(rng.uniform(0.6, 0.85) * span)
    sandbox.stop_portal()
    down_at = time.monotonic()
    second = sandbox.start("run", "--format", "json")
    time.sleep(max(0.0, plan.portal_outage_seconds - (time.monotonic() - down_at)))
    sandbox.start_portal()
    during = [first.wait(), second.wait()]
    recovered, after = sandbox.recover()
    counts = count(take_snapshot(sandbox), ids)
    row.counts = counts
    row.recovered = int(recovered and counts.lost == 0 and counts.duplicates == 0)
    row.seconds = time.monotonic() - started
    row.notes.append(f"runs during the outage: {_describe(during)}; after it: {_describe(after)}")
    return row


Outage = Callable[[Plan, Sandbox, Random, float], Row]


def _row(plan: Plan, outage: Outage, sandbox: Sandbox) -> Row:
    rng = Random(f"{plan.seed}:outages:{outage.__name__}")
    # How long a run of this many orders takes, to aim the outage at its order intake.
    sandbox.place_orders(plan.orders, rng)
    calibration = sandbox.run()
    span = calibration.seconds if calibration.returncode == 0 else 10.0
    return outage(plan, sandbox, rng, span)


def parts(plan: Plan) -> list[Callable[[], list[Row]]]:
    # The ci size leaves the ERP lock out: it cannot be shorter than the gateway's 30 s wait.
    outages: list[Outage] = [erp_locked] if plan.erp_lock_seconds else []
    outages.append(portal_gone)
    return [
        partial(in_own_sandbox, "outages", partial(_row, plan, outage), close_packs=False)
        for outage in outages
    ]
