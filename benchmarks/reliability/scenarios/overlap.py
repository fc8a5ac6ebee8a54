"""Two and three runs at once on the same orders, with readers beside them.

A run started by hand while the schedule's run is going, or two sensors' runs racing, must not
post an order twice, lose one, or make a reader fail: ``exceptions list`` and ``audit verify``
are run in a loop for as long as the runs last (a reader that fails, or a verify that reports
tampering which is only a writer mid-append, is a finding). The runs start a fraction of a
second apart, so they read the same purchases.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from random import Random

from benchmarks.reliability.plan import Plan
from benchmarks.reliability.report import Row
from benchmarks.reliability.sandbox import Outcome, Sandbox, in_own_sandbox
from benchmarks.reliability.tally import count, take_snapshot

READERS = (("exceptions", "list", "--format", "json"), ("audit", "verify"))


def _read_while(sandbox: Sandbox, stop: threading.Event, results: list[Outcome]) -> None:
    while not stop.is_set():
        for args in READERS:
            results.append(sandbox.start(*args).wait(300))


def overlapping(plan: Plan, sandbox: Sandbox, rng: Random, runs: int) -> Row:
    row = Row(f"{runs} overlapping runs with readers", trials=1)
    started = time.monotonic()
    ids = sandbox.place_orders(plan.orders, rng)
    stop = threading.Event()
    reads: list[Outcome] = []
    reader = threading.Thread(target=_read_while, args=(sandbox, stop, reads), daemon=True)
    reader.start()
    running = []
    for _ in range(runs):
        running.append(sandbox.start("run", "--format", "json"))
        time.sleep(rng.uniform(0.0, 0.5))
    outcomes = [r.wait() for r in running]
    stop.set()
    reader.join(300)
    recovered, _ = sandbox.recover()
    counts = count(take_snapshot(sandbox), ids)
    row.counts = counts
    row.recovered = int(recovered and counts.lost == 0 and counts.duplicates == 0)
    row.seconds = time.monotonic() - started
    failed_reads = [r for r in reads if r.returncode != 0]
    row.notes.append(
        f"run exit codes {[o.returncode for o in outcomes]}; {len(reads)} reads beside them, "
        f"{len(failed_reads)} failed"
    )
    for failed in failed_reads[:3]:
        row.notes.append(
            f"`{' '.join(failed.args)}` exited {failed.returncode}: "
            f"{(failed.stderr or failed.stdout).strip()[-200:]}"
        )
    if failed_reads:
        row.failed = True
    return row


def _row(plan: Plan, runs: int, sandbox: Sandbox) -> Row:
    return overlapping(plan, sandbox, Random(f"{plan.seed}:overlap:{runs}"), runs)


def parts(plan: Plan) -> list[Callable[[], list[Row]]]:
    """One part per row (each its own sandbox), so that the suite runs them side by side."""
    return [
        partial(in_own_sandbox, "overlap", partial(_row, plan, runs), close_packs=False)
        for runs in plan.overlap_runs
    ]
