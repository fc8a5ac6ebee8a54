"""``kill -9`` of a run at a random moment of a 1,000-order intake, then plain runs.

One sandbox for every trial: each trial places a fresh batch of orders, starts ``b2b-pipeline
run``, kills its process group with SIGKILL at a random moment, then lets the next runs do
what the schedules would. Each trial is counted on its own orders.

Trials come in chains of ``plan.kill_chain``: the run after a kill is the next trial's run,
killed in its turn (as the schedule would start it, on the new orders and whatever the killed
one left), and after the last kill of a chain plain runs follow until nothing is left; every
trial of the chain is then counted. A chain of one is a kill followed by plain runs. Chains
keep 30 kills of a 1,000-order intake inside the suite's time bound, and make the recovery
harder, not easier: a recovery run can itself be killed.

Where the kills land matters more than how many there are: a run spends its first seconds
starting up and syncing master data, and the moments that can duplicate or lose an order come
after the ERP commit (the write-back of ERP numbers to the portal, the tracking, the cursor).
So an uninterrupted run of the same size is measured first, with the moment its orders reached
the ERP, and each kill is drawn uniformly from half way to that moment until the end of the
run. The notes say where the kills landed, read from the systems right after each kill: before
the ERP commit, after it with the write-back not started, part way through the write-back,
or after all of it (the tracking, audit and cursor steps).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from random import Random

from benchmarks.reliability.plan import Plan
from benchmarks.reliability.report import Row
from benchmarks.reliability.sandbox import Outcome, Sandbox, utc_now
from benchmarks.reliability.tally import all_duplicates, all_lost, count, take_snapshot

LANDINGS = (
    "before the ERP commit",
    "after the ERP commit, before the write-back",
    "part way through the write-back",
    "after the write-back",
    "after the run had ended",
)


def _erp_refs(sandbox: Sandbox) -> set[str]:
    from b2b_pipeline.connectors.erp.gateway import ErpGateway

    erp = ErpGateway(f"sqlite:///{sandbox.erp_path}")
    try:
        return set(erp.read_table("sales_orders")["external_ref"].astype(str))
    finally:
        erp.dispose()


def _written_back(sandbox: Sandbox, ids: set[str], since: dt.datetime) -> int:
    """How many of ``ids`` carry their ERP order number on the portal."""
    from b2b_pipeline.connectors.sparklayer import purchases as wire

    return sum(
        1
        for p in sandbox.portal_purchases(since)
        if wire.purchase_id(p) in ids and wire.internal_id(p)
    )


def _landing(sandbox: Sandbox, killed: Outcome, batch: set[str], since: dt.datetime) -> str:
    """Where a kill landed for its batch, read from the ERP and the portal right after it."""
    if killed.returncode >= 0:
        return "after the run had ended"
    posted = len(_erp_refs(sandbox) & batch)
    if posted == 0:
        return "before the ERP commit"
    written = _written_back(sandbox, batch, since)
    if written == 0:
        return "after the ERP commit, before the write-back"
    if written < posted:
        return "part way through the write-back"
    return "after the write-back"


def _calibrate(sandbox: Sandbox, ids: list[str]) -> tuple[float, float]:
    """(seconds until the batch reached the ERP, seconds of the whole run) for one run."""
    wanted = set(ids)
    committed: list[float] = []
    stop = threading.Event()
    started = time.monotonic()

    def watch() -> None:
        while not stop.is_set() and not committed:
            try:
                if _erp_refs(sandbox) & wanted:
                    committed.append(time.monotonic() - started)
            except Exception:  # the ERP is being written: look again
                pass
            stop.wait(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    outcome = sandbox.run()
    stop.set()
    watcher.join(10)
    span = outcome.seconds if outcome.returncode == 0 else 15.0
    return (committed[0] if committed else span / 2), span


def run(plan: Plan) -> list[Row]:
    rng = Random(plan.seed)
    row = Row(f"kill -9 during a {plan.orders:,}-order intake")
    started = time.monotonic()
    landed = dict.fromkeys(LANDINGS, 0)
    with Sandbox("kill") as sandbox:
        sandbox.prepare()
        commit_at, span = _calibrate(sandbox, sandbox.place_orders(plan.orders, rng))
        row.notes.append(
            f"an uninterrupted run of {plan.orders:,} orders took {span:.1f} s, its orders "
            f"reached the ERP after {commit_at:.1f} s; kills drawn from {commit_at / 2:.1f} s "
            f"to {span:.1f} s"
        )
        trials_left = plan.kill_trials
        while trials_left:
            chain = min(plan.kill_chain, trials_left)
            trials_left -= chain
            # A minute of margin: the chain's orders are all changed after this.
            since = utc_now() - dt.timedelta(minutes=1)
            batches = []
            for _ in range(chain):
                ids = sandbox.place_orders(plan.orders, rng)
                batches.append(ids)
                running = sandbox.start("run", "--format", "json")
                time.sleep(rng.uniform(commit_at / 2, span))
                running.kill9()
                landed[_landing(sandbox, running.wait(), set(ids), since)] += 1
            recovered, outcomes = sandbox.recover()
            snapshot = take_snapshot(sandbox, since)
            for ids in batches:
                counts = count(snapshot, ids)
                row.trials += 1
                row.counts.add(counts)
                row.recovered += int(recovered and counts.lost == 0 and counts.duplicates == 0)
            if not recovered:
                row.notes.append(f"recovery failed: {outcomes[-1].stderr.strip()[-300:]}")
        snapshot = take_snapshot(sandbox)
        verify = sandbox.cli("audit", "verify")
        leaks = sandbox.secret_leaks()
    row.seconds = time.monotonic() - started
    row.notes.append(
        "kills landed " + ", ".join(f"{n} {where}" for where, n in landed.items() if n)
    )
    if row.counts.write_back_pending:
        row.notes.append(f"{row.counts.write_back_pending} ERP numbers not written back")
    if all_duplicates(snapshot) or all_lost(snapshot):
        row.notes.append(
            f"whole sandbox: {all_duplicates(snapshot)} duplicates, {all_lost(snapshot)} lost"
        )
        row.failed = True
    if verify.returncode != 0:
        row.notes.append(f"audit verify exited {verify.returncode}: {verify.stdout[-300:]}")
        row.failed = True
    if leaks:
        row.notes.append(f"the client secret appears in: {', '.join(leaks)}")
        row.failed = True
    return [row]
