"""``python -m benchmarks.reliability [--quick] [--only NAME ...]``: run the suite, print the
table (and write it as Markdown with ``--markdown FILE``); exit 1 if any row has a duplicate,
a lost order, a recovery that needed a person, or another defect named in its notes."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

from benchmarks.reliability.plan import Plan
from benchmarks.reliability.report import render
from benchmarks.reliability.sandbox import KEEP_VARIABLE
from benchmarks.reliability.scenarios import SCENARIOS
from benchmarks.reliability.suite import run_suite


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/reliability", description=__doc__)
    parser.add_argument(
        "--quick", "--small", action="store_true", help="the CI-sized suite (minutes)"
    )
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS), default=None)
    parser.add_argument(
        "--ci", action="store_true", help="the pytest test's size (every scenario, smallest)"
    )
    parser.add_argument("--lanes", type=int, help="scenarios run side by side (full suite: 4)")
    parser.add_argument(
        "--daemon-trials", type=int, help="kill -9 trials under dg dev (full suite: 6)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument("--keep", action="store_true", help="keep each sandbox (logs, data)")
    args = parser.parse_args(argv)
    if args.keep:
        os.environ[KEEP_VARIABLE] = "1"
    if args.ci:
        plan, size = Plan.ci(args.seed), "ci"
    elif args.quick:
        plan, size = Plan.small(args.seed), "quick"
    else:
        plan, size = Plan.full(args.seed), "full"
    if args.lanes:
        plan = dataclasses.replace(plan, lanes=args.lanes)
    if args.daemon_trials:
        plan = dataclasses.replace(plan, daemon_trials=args.daemon_trials)
    started = time.monotonic()
    rows = run_suite(plan, args.only)
    table = render(rows)
    took = time.monotonic() - started
    footer = f"\n\n{size} run, seed {plan.seed}, {plan.lanes} lanes, {took:.0f} s in all"
    print(table + footer)
    if args.markdown:
        args.markdown.write_text(table + footer + "\n")
    return 0 if all(row.ok for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
