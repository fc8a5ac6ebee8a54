"""``kill -9`` of a run at a random moment of a 1,000-order intake, then plain runs.

Each trial starts ``b2b-pipeline run``, kills its process group with SIGKILL at a random moment
and reads where the kill landed; then the next runs do what the schedules would. Trials are
counted on the orders of their intake.

Trials come in chains of ``plan.kill_chain`` on one intake: a fresh batch of orders is placed,
the run that takes it is killed, then the run after it (as the schedule would start it, on
whatever the killed one left) is killed in its turn, and so on; after the last kill of a chain
plain runs follow until nothing is left, and the batch is counted. Every kill is a trial, and
the kills after the first are the harder ones: a recovery run killed part way through its own
recovery. Chains keep 30 kills of a 1,000-order intake inside the suite's time bound (each
order is posted and written back once per chain, not once per kill), and the trials are
spread over ``plan.kill_parts`` sandboxes that the suite runs side by side.

Where the kills land matters more than how many there are: a run spends its first seconds
starting up and syncing master data, and the moments that can duplicate or lose an order come
after the ERP commit (the write-back of ERP numbers to the portal, the tracking, the cursor).
So an uninterrupted run of the same size is measured first, with the moment its orders reached
the ERP, and the first kill of a chain is drawn uniformly from half way to that moment until
the end of the run (every other chain's from just before that moment to a little after it,
the few seconds in which the orders are in the ERP and none carries its number); a later kill
from half way to that moment until the end of the work left (the write-back of the orders
that do not yet carry their ERP number). The notes say where the kills landed, read from the
systems right after each kill: before the ERP commit, after it with the write-back not
started, part way through the write-back, or after all of it (the tracking, audit and cursor steps).
"""

from __future__ import annotations

import datetime as dt
import subprocess
import threading
import time
from collections.abc import Callable
from functools import partial
from random import Random

from benchmarks.reliability.plan import Plan
from benchmarks.reliability.report import Row
from benchmarks.reliability.sandbox import Sandbox, utc_now
from benchmarks.reliability.tally import all_duplicates, all_lost, count, take_snapshot

LANDINGS = (
    "before the ERP commit",
    "after the ERP commit, before the write-back",
    "part way through the write-back",
    "after the write-back",
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


def _landing(sandbox: Sandbox, batch: set[str], since: dt.datetime) -> tuple[str, float]:
    """Where a kill landed for its batch, read from the ERP and the portal right after it, and
    the share of the batch still without its ERP number on the portal."""
    posted = len(_erp_refs(sandbox) & batch)
    if posted == 0:
        return "before the ERP commit", 1.0
    written = _written_back(sandbox, batch, since)
    left = 1.0 - written / len(batch)
    if written == 0:
        return "after the ERP commit, before the write-back", left
    if written < posted:
        return "part way through the write-back", left
    return "after the write-back", left


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


def _trials(plan: Plan, part: int, trials: int) -> list[Row]:
    rng = Random(f"{plan.seed}:kill:{part}")
    row = Row(f"kill -9 during a {plan.orders:,}-order intake")
    started = time.monotonic()
    landed = dict.fromkeys(LANDINGS, 0)
    intakes = 0
    with Sandbox("kill") as sandbox:
        sandbox.prepare()
        commit_at, span = _calibrate(sandbox, sandbox.place_orders(plan.orders, rng))
        row.notes.append(
            f"sandbox {part + 1}: an uninterrupted run of {plan.orders:,} orders took "
            f"{span:.1f} s, its orders reached the ERP after {commit_at:.1f} s; first kills "
            f"drawn from {commit_at / 2:.1f} s to {span:.1f} s"
        )
        trials_left, missed = trials, 0
        while trials_left and missed < trials:
            chain = min(plan.kill_chain, trials_left)
            trials_left -= chain
            intakes += 1
            # A minute of margin: the chain's orders are all changed after this.
            since = utc_now() - dt.timedelta(minutes=1)
            ids = sandbox.place_orders(plan.orders, rng)
            batch = set(ids)
            left = 1.0
            kills = 0
            while kills < chain:
                running = sandbox.start("run", "--format", "json")
                lower, upper = commit_at / 2, commit_at + (span - commit_at) * left
                if kills == 0 and intakes % 2 == 0:
                    # Every other intake's first kill is aimed at the ERP commit itself (the
                    # orders are in the ERP, none carries its number yet): a moment a few
                    # seconds long that a draw over the whole run seldom hits.
                    lower, upper = 0.9 * commit_at, commit_at + 0.15 * (span - commit_at)
                try:
                    running.process.wait(timeout=rng.uniform(lower, upper))
                    ended_first = True
                except subprocess.TimeoutExpired:
                    ended_first = False
                running.kill9()
                outcome = running.wait()
                if ended_first or outcome.returncode >= 0:
                    # The run finished before its kill: not a trial, and this intake has
                    # nothing left to kill a run on. Its kills go to a fresh intake (at most
                    # as many such misses as trials, so the loop ends).
                    missed += 1
                    trials_left += chain - kills
                    break
                where, left = _landing(sandbox, batch, since)
                landed[where] += 1
                kills += 1
            recovered, outcomes = sandbox.recover()
            counts = count(take_snapshot(sandbox, since), ids)
            row.trials += kills
            row.counts.add(counts)
            row.recovered += kills * int(recovered and counts.lost == 0 and counts.duplicates == 0)
            if not recovered:
                row.notes.append(f"recovery failed: {outcomes[-1].stderr.strip()[-300:]}")
        snapshot = take_snapshot(sandbox)
        verify = sandbox.cli("audit", "verify")
        leaks = sandbox.secret_leaks()
    row.seconds = time.monotonic() - started
    row.notes.append(
        f"sandbox {part + 1}: {row.trials} kills on {intakes} intakes of {plan.orders:,} orders; "
        "landed "
        + ", ".join(f"{n} {where}" for where, n in landed.items() if n)
        + (
            f"; {missed} drawn after the run had already ended: not counted, the kills left "
            "moved to a fresh intake"
            if missed
            else ""
        )
    )
    if row.trials < trials:
        row.notes.append(f"only {row.trials} of {trials} kills landed while a run was going")
        row.failed = True
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


def parts(plan: Plan) -> list[Callable[[], list[Row]]]:
    """``plan.kill_trials`` split over ``plan.kill_parts`` sandboxes (the suite merges their
    rows into one)."""
    shares = [plan.kill_trials // plan.kill_parts] * plan.kill_parts
    for extra in range(plan.kill_trials % plan.kill_parts):
        shares[extra] += 1
    return [partial(_trials, plan, part, trials) for part, trials in enumerate(shares) if trials]
