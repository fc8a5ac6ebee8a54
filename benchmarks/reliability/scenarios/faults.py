"""Injected portal faults at 20% of calls: 5xx, 429, 409, lost responses, latency, bad bodies.

One row per kind of fault, and one with every kind together (20% of calls in all; ``--quick``
runs that one and the one that tests idempotency hardest: lost responses; ``Plan.fault_rows``
chooses). Each row has its own sandbox (so the suite runs them side by side: most of a row is
the client's backoff), places its own orders and is counted on them: plain runs go on while
the fault is on (as the schedules would keep starting them: at most three), then the fault
stops and the next runs recover. The simulator injects 5xx, 409 (writes only) and malformed
2xx bodies itself
(``/_sim/faults``, seeded); the proxy adds 429 with a short ``Retry-After``, connections
dropped before the call arrives, responses lost after the portal applied the call (a
timeout, from the client's side), and slow answers.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from random import Random
from typing import Any

from benchmarks.reliability.plan import Plan
from benchmarks.reliability.proxy import ProxyFaults
from benchmarks.reliability.report import Row
from benchmarks.reliability.sandbox import Sandbox, in_own_sandbox
from benchmarks.reliability.tally import count, take_snapshot

RATE = 0.2
RUNS_WHILE_FAULTY = 3


@dataclass(frozen=True)
class Fault:
    name: str
    simulator: dict[str, Any] = field(default_factory=dict)
    proxy: ProxyFaults | None = None


def faults(seed: int) -> list[Fault]:
    return [
        Fault("5xx at 20%", {"error_rate": RATE, "seed": seed}),
        Fault("429 at 20%", proxy=ProxyFaults(throttle_rate=RATE, seed=seed)),
        Fault("409 on 20% of writes", {"conflict_rate": RATE, "seed": seed}),
        Fault(
            "timeouts at 20% (lost responses, dropped connections)",
            proxy=ProxyFaults(drop_rate=RATE / 2, lose_response_rate=RATE / 2, seed=seed),
        ),
        Fault("latency 0.3 s on 20%", proxy=ProxyFaults(latency_rate=RATE, latency_s=0.3)),
        Fault("malformed bodies at 20%", {"malformed_rate": RATE, "seed": seed}),
        Fault(
            "all of these at 20% in total",
            {"error_rate": 0.04, "conflict_rate": 0.03, "malformed_rate": 0.03, "seed": seed},
            ProxyFaults(
                throttle_rate=0.03,
                drop_rate=0.02,
                lose_response_rate=0.03,
                latency_rate=0.02,
                latency_s=0.3,
                seed=seed,
            ),
        ),
    ]


def run_one(plan: Plan, sandbox: Sandbox, fault: Fault, rng: Random) -> Row:
    row = Row(f"portal {fault.name}", trials=1)
    started = time.monotonic()
    ids = sandbox.place_orders(plan.fault_orders, rng)
    # A few quotes too: filtered, not posted, under faults as without.
    ids += sandbox.place_orders(max(plan.fault_orders // 50, 2), rng, types=("quote",))
    proxy = sandbox.proxy(faults=fault.proxy) if fault.proxy else None
    failed = 0
    with proxy if proxy is not None else contextlib.nullcontext():
        if proxy is not None:
            sandbox.portal_url = proxy.url
        sandbox.faults(**fault.simulator)
        try:
            for _ in range(RUNS_WHILE_FAULTY):
                outcome = sandbox.run()
                failed += outcome.returncode != 0
                if outcome.returncode == 0:
                    break
        finally:
            sandbox.faults()
            sandbox.portal_url = sandbox.tap_url
    during = count(take_snapshot(sandbox), ids)
    recovered, _ = sandbox.recover()
    counts = count(take_snapshot(sandbox), ids)
    row.counts = counts
    row.recovered = int(recovered and counts.lost == 0 and counts.duplicates == 0)
    row.seconds = time.monotonic() - started
    injected = dict(proxy.stats) if proxy is not None else {}
    row.notes.append(
        f"{failed} of the runs during the fault exited non-zero; after them "
        f"{during.posted} posted, {during.queued} queued, {during.lost} not yet handled"
        + (f"; proxy injected {injected}" if injected else "")
    )
    if counts.write_back_pending:
        row.notes.append(f"{counts.write_back_pending} ERP numbers not written back")
    if counts.queued:
        row.notes.append(f"{counts.queued} orders queued (a fault filed as an exception?)")
    return row


def _row(plan: Plan, fault: Fault, sandbox: Sandbox) -> Row:
    return run_one(plan, sandbox, fault, Random(f"{plan.seed}:faults:{fault.name}"))


def parts(plan: Plan) -> list[Callable[[], list[Row]]]:
    """One part per fault row (``plan.fault_rows`` chooses; all of them by default)."""
    wanted = plan.fault_rows
    chosen = [f for f in faults(plan.seed) if not wanted or f.name.startswith(wanted)]
    return [partial(in_own_sandbox, "faults", partial(_row, plan, fault)) for fault in chosen]
