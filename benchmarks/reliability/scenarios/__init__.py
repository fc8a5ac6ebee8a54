"""The scenarios, in the order the suite runs them.

Each scenario is a ``run(plan)`` returning table rows. A scenario whose rows are independent
(each with its own sandbox) may also offer ``parts(plan)``: one callable per row or group of
rows, so that the suite spreads them over its lanes instead of running them one after another
in one lane (the fault rows mostly wait on the client's backoff; the kill trials are the
longest scenario).
"""

from __future__ import annotations

from collections.abc import Callable

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

SCENARIOS: dict[str, Callable[[Plan], list[Row]]] = {
    "kill": kill.run,
    "faults": faults.run,
    "hostile": hostile.run,
    "outages": outages.run,
    "overlap": overlap.run,
    "buyers": buyers.run,
    "tamper": tamper.run,
    "daemon": daemon.run,
}
_PARTS: dict[str, Callable[[Plan], list[Part]]] = {
    "kill": kill.parts,
    "faults": faults.parts,
    "outages": outages.parts,
    "overlap": overlap.parts,
}
# Run only when named (``--only daemon``) in the quick suite: dg dev alone takes a minute to
# start on this machine.
FULL_ONLY = ("daemon",)


def parts(name: str, plan: Plan) -> list[Part]:
    """The independent pieces of scenario ``name``, whose rows together are its rows."""
    if name in _PARTS:
        return _PARTS[name](plan)
    return [lambda: SCENARIOS[name](plan)]
