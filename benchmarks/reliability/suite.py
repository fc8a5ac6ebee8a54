"""Running the scenarios: each one's rows, then the secret scan over every sandbox, as rows of
one table (``scripts/reliability`` prints it; ``test_reliability_suite.py`` asserts on it).

Scenarios are independent (each has its own sandbox: simulator process, ports, files), and so
are the parts some of them split into (a fault row, an outage, a share of the kill trials), so
they run in ``plan.lanes`` threads side by side; the rows come back in the scenarios' order,
the rows of one scenario's parts merged into one where they share a name.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from benchmarks.reliability.plan import Plan
from benchmarks.reliability.report import Row, merged
from benchmarks.reliability.sandbox import SCANS
from benchmarks.reliability.scenarios import FULL_ONLY, SCENARIOS, Part

# Started first: the longest (kill), then those that mostly wait, so that their waiting
# overlaps the CPU-bound scenarios started after them.
FIRST = ("kill", "daemon", "outages", "hostile", "faults")


def run_suite(plan: Plan, names: Sequence[str] | None = None) -> list[Row]:
    """The rows of ``names`` (every scenario by default), in order, then the secret scan's."""
    started = time.monotonic()
    first_scan = len(SCANS)
    chosen = list(names or [n for n in SCENARIOS if not (plan.quick and n in FULL_ONLY)])

    def one(name: str, part: Part, label: str) -> list[Row]:
        print(f"[{time.monotonic() - started:5.0f} s] {label} …", file=sys.stderr, flush=True)
        began = time.monotonic()
        try:
            rows = part()
        # One broken scenario must not hide the others' figures (dg_dev.py exits when dg dev
        # does not come up: SystemExit).
        except (Exception, SystemExit) as error:
            failed = Row(name, failed=True)
            failed.notes.append(f"the scenario itself failed: {type(error).__name__}: {error}")
            rows = [failed]
        took = time.monotonic() - began
        print(
            f"[{time.monotonic() - started:5.0f} s] {label} done in {took:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        return rows

    order = sorted(chosen, key=lambda n: FIRST.index(n) if n in FIRST else len(FIRST))
    pieces = {name: SCENARIOS[name](plan) for name in chosen}
    with ThreadPoolExecutor(max(1, plan.lanes)) as pool:
        futures = {
            name: [
                pool.submit(one, name, part, f"{name} {i + 1}/{len(pieces[name])}")
                for i, part in enumerate(pieces[name])
            ]
            for name in order
        }
        rows = [
            row
            for name in chosen
            for row in merged([r for future in futures[name] for r in future.result()])
        ]
    rows.append(secret_scan_row(first_scan))
    return rows


def secret_scan_row(first_scan: int = 0) -> Row:
    """The secret scan over every sandbox of the run, as a row: each sandbox is one trial,
    "recovered" counts the sandboxes with no secret anywhere (``secrets.py``)."""
    scans = SCANS[first_scan:]
    row = Row("secret scan: client secret and issued tokens", trials=len(scans))
    row.recovered = sum(1 for scan in scans if not scan.places)
    tokens = sum(scan.tokens for scan in scans)
    commands = sum(scan.commands for scan in scans)
    row.notes.append(
        f"{len(scans)} sandboxes, {tokens} issued tokens and the client secret looked for in "
        f"the output of {commands} commands and of every started run, every file under the "
        "data folder, DAGSTER_HOME and the logs, every audit column, every run's event "
        "records and the close packs; 'recovered' counts the sandboxes where none was found"
    )
    for scan in scans:
        row.notes.extend(f"{scan.sandbox}: {place}" for place in scan.places)
    if not scans or tokens == 0:
        row.notes.append("nothing was scanned, or no token was seen: the scan proves nothing")
    row.failed = not scans or tokens == 0 or any(scan.places for scan in scans)
    return row
