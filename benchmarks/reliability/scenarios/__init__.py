"""The scenarios, in the order the suite runs them; each ``run(plan)`` returns table rows."""

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
# Run only when named (``--only daemon``) in the quick suite: dg dev alone takes a minute to
# start on this machine.
FULL_ONLY = ("daemon",)
