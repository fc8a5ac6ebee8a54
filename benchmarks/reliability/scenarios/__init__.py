"""The scenarios, in the order the suite runs them.

Each scenario gives its ``parts(plan)``: callables returning table rows, independent of one
another (each with its own sandbox), so that the suite spreads them over its lanes instead of
running a scenario's rows one after another in one lane (the fault rows mostly wait on the
client's backoff; the kill trials are the longest scenario). A scenario that is one piece is
its ``run(plan)``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from benchmarks.reliability.plan import Plan
from benchmarks.reliability.report import Row
from benchmarks.reliability.scenarios import (
    buyers,
    daemon,
    faults,
    hostile,
    kill,
    outages,
    overlap,
    tamper,
)

Part = Callable[[], list[Row]]


def _whole(run: Callable[[Plan], list[Row]]) -> Callable[[Plan], list[Part]]:
    return lambda plan: [partial(run, plan)]


SCENARIOS: dict[str, Callable[[Plan], list[Part]]] = {
    "kill": kill.parts,
    "faults": faults.parts,
    "hostile": _whole(hostile.run),
    "outages": outages.parts,
    "overlap": overlap.parts,
    "buyers": _whole(buyers.run),
    "tamper": _whole(tamper.run),
    "daemon": _whole(daemon.run),
}
# Run only when named (``--only daemon``) in the quick suite: dg dev alone takes a minute to
# start on this machine.
FULL_ONLY = ("daemon",)
