"""``kill -9`` of a run at a random moment of a 1,000-order intake, then plain runs.

One sandbox for every trial: each trial places a fresh batch of orders, starts ``b2b-pipeline
run``, kills its process group with SIGKILL after a random delay drawn over the length of an
uninterrupted run (measured first, on a batch of the same size), then lets the next runs do
what the schedules would. Each trial is counted on its own orders; the notes say where the
kills landed (before any order of the batch reached the ERP, part way, or after all of it).
"""

from __future__ import annotations

import time
from random import Random

from benchmarks.reliability.plan import Plan
from benchmarks.reliability.report import Row
from benchmarks.reliability.sandbox import Sandbox
from benchmarks.reliability.tally import all_duplicates, all_lost, count, take_snapshot


def _erp_refs(sandbox: Sandbox) -> set[str]:
    from b2b_pipeline.connectors.erp.gateway import ErpGateway

    erp = ErpGateway(f"sqlite:///{sandbox.erp_path}")
    try:
        return set(erp.read_table("sales_orders")["external_ref"].astype(str))
    finally:
        erp.dispose()


def run(plan: Plan) -> list[Row]:
    rng = Random(plan.seed)
    row = Row(f"kill -9 during a {plan.orders:,}-order intake")
    started = time.monotonic()
    landed = {"before the ERP commit": 0, "part way through posting": 0, "after posting": 0}
    with Sandbox("kill") as sandbox:
        sandbox.prepare()
        sandbox.place_orders(plan.orders, rng)
        calibration = sandbox.run()
        span = calibration.seconds if calibration.returncode == 0 else 15.0
        row.notes.append(f"an uninterrupted run of {plan.orders:,} orders took {span:.1f} s")
        for _ in range(plan.kill_trials):
            ids = sandbox.place_orders(plan.orders, rng)
            running = sandbox.start("run", "--format", "json")
            time.sleep(rng.uniform(0.2, span))
            running.kill9()
            killed = running.wait()
            posted_before = len(_erp_refs(sandbox) & set(ids))
            if killed.returncode >= 0:
                landed["after posting"] += 1  # the run had finished before the signal
            elif posted_before == 0:
                landed["before the ERP commit"] += 1
            elif posted_before < len(ids):
                landed["part way through posting"] += 1
            else:
                landed["after posting"] += 1
            recovered, outcomes = sandbox.recover()
            counts = count(take_snapshot(sandbox), ids)
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
