"""Month-end reconciliation at scale: a month of a million orders, synthetic, in memory.

Times :func:`reconcile_month` and :func:`summarise` and prints seconds and the process's peak
resident memory (DuckDB allocates outside Python, so ``tracemalloc`` would not see it).
Target: under 10 seconds for the reconciliation. The floor, measured in the same run on the
same frames: one hand-written DuckDB ``FULL OUTER JOIN`` of the portal's and the ERP's orders
with the open queue, each line classified by a ``CASE`` (no month window, no duplicate or
hand-keyed detection, no reasons), materialised as a DataFrame as ``reconcile_month``'s
lines are; it is checked to give the same number of lines.

    .venv/bin/python benchmarks/bench_reconciliation.py [--orders 1000000] [--accounts 5000]
                                                        [--json PATH]

About 1% of the orders carry a planted discrepancy (missing in the ERP, held in the queue,
total edited, duplicated, wrong account, cancelled on one side, keyed in the ERP by hand); the
script checks that each kind is found in the expected number before printing the timings.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from b2b_pipeline.domain.reconciliation import (
    outcome_counts,
    reconcile_month,
    summarise,
    unexplained,
)

MONTH = "2025-01"
MONTH_START = pd.Timestamp("2025-01-01", tz="UTC")
MONTH_SECONDS = 31 * 24 * 3600
# Share of orders per planted discrepancy (each a disjoint slice of the month's orders).
PLANTED = {
    "missing_in_erp": 0.002,
    "exception_open": 0.002,
    "amount_edited": 0.002,
    "duplicated": 0.001,
    "wrong_account": 0.001,
    "cancelled_in_erp": 0.001,
}
KEYED_BY_HAND = 0.001  # ERP-only orders, as a share of the month's orders


def synthetic_month(orders: int, accounts: int, seed: int = 7):
    """Portal orders, ERP orders and open exceptions for one month, with planted problems."""
    rng = np.random.default_rng(seed)
    numbers = np.arange(1, orders + 1)
    ids = pd.Series(numbers).map("P-{:08d}".format)
    account_codes = pd.Series(np.arange(accounts)).map("ACC{:05d}".format)
    account = account_codes.to_numpy()[rng.integers(0, accounts, orders)]
    gross = np.round(rng.uniform(5, 5000, orders), 2)
    placed = MONTH_START + pd.to_timedelta(rng.integers(0, MONTH_SECONDS, orders), unit="s")
    portal = pd.DataFrame(
        {
            "portal_order_id": ids,
            "visible_id": "SL-" + ids.str[2:],
            "accounting_id": account,
            "currency": "GBP",
            "portal_gross": gross,
            "status": "order",
            "placed_at": placed,
        }
    )

    # Disjoint random slices of orders, one per planted problem.
    shuffled = rng.permutation(orders)
    slices: dict[str, np.ndarray] = {}
    offset = 0
    for name, share in PLANTED.items():
        size = int(orders * share)
        slices[name] = np.sort(shuffled[offset : offset + size])
        offset += size

    posted = np.ones(orders, dtype=bool)
    posted[slices["missing_in_erp"]] = False
    posted[slices["exception_open"]] = False
    erp = pd.DataFrame(
        {
            "order_no": numbers + 10_000_000,
            "external_ref": ids,
            "account_code": account,
            "po_number": None,
            "currency": "GBP",
            "gross_total": gross.copy(),
            "status": "TO_BE_INVOICED",
            "order_date": placed + pd.Timedelta(seconds=30),
        }
    )
    erp.loc[slices["amount_edited"], "gross_total"] += 12.5
    erp.loc[slices["wrong_account"], "account_code"] = "WRONG01"
    erp.loc[slices["cancelled_in_erp"], "status"] = "CANCELLED"
    erp = erp.loc[posted]

    dup_source = erp.loc[erp["order_no"].isin(slices["duplicated"] + 1 + 10_000_000)]
    duplicates = dup_source.assign(
        order_no=np.arange(len(dup_source)) + 20_000_000,
        external_ref=dup_source["external_ref"] + "-2",
    )
    keyed = int(orders * KEYED_BY_HAND)
    by_hand = pd.DataFrame(
        {
            "order_no": np.arange(keyed) + 30_000_000,
            "external_ref": None,
            "account_code": account[:keyed],
            "po_number": "PHONE",
            "currency": "GBP",
            "gross_total": np.round(rng.uniform(5, 5000, keyed), 2),
            "status": "TO_BE_INVOICED",
            "order_date": MONTH_START + pd.Timedelta(days=3),
        }
    )
    erp = pd.concat([erp, duplicates, by_hand], ignore_index=True)

    held = ids.iloc[slices["exception_open"]]
    exceptions = pd.DataFrame(
        {
            "entity_key": held.to_numpy(),
            "category": "PRICING",
            "reason_code": "PRICE_MISMATCH",
            "message": "Portal total differs from the ERP's calculation for this account.",
        }
    )
    expected = {
        "MISSING_IN_ERP": len(slices["missing_in_erp"]),
        "EXCEPTION_OPEN": len(slices["exception_open"]),
        "AMOUNT_MISMATCH": len(slices["amount_edited"]),
        "DUPLICATE_IN_ERP": len(duplicates),
        "CUSTOMER_MISMATCH": len(slices["wrong_account"]),
        "STATUS_MISMATCH": len(slices["cancelled_in_erp"]),
        "MISSING_IN_PORTAL": keyed,
    }
    return portal, erp, exceptions, expected


FLOOR_SQL = """
SELECT p.portal_order_id, e.order_no, coalesce(e.account_code, p.accounting_id) AS account_code,
       p.portal_gross, e.gross_total AS erp_gross,
       CASE WHEN e.order_no IS NULL AND x.entity_key IS NOT NULL THEN 'EXCEPTION_OPEN'
            WHEN e.order_no IS NULL THEN 'MISSING_IN_ERP'
            WHEN p.portal_order_id IS NULL THEN 'MISSING_IN_PORTAL'
            WHEN e.account_code <> p.accounting_id THEN 'CUSTOMER_MISMATCH'
            WHEN e.status = 'CANCELLED' THEN 'STATUS_MISMATCH'
            WHEN abs(e.gross_total - p.portal_gross) > 0.01 THEN 'AMOUNT_MISMATCH'
            ELSE 'MATCHED' END AS outcome
FROM portal p FULL OUTER JOIN erp e ON e.external_ref = p.portal_order_id
LEFT JOIN (SELECT DISTINCT entity_key FROM exceptions) x ON x.entity_key = p.portal_order_id
"""


def floor_lines(portal: pd.DataFrame, erp: pd.DataFrame, exceptions: pd.DataFrame) -> pd.DataFrame:
    connection = duckdb.connect(":memory:")
    try:
        connection.register("portal", portal)
        connection.register("erp", erp)
        connection.register("exceptions", exceptions)
        return connection.sql(FLOOR_SQL).df()
    finally:
        connection.close()


def peak_rss_mib() -> float:
    # ru_maxrss is KiB on Linux (bytes on macOS).
    scale = 1 if sys.platform != "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=5_000)
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()

    began = time.perf_counter()
    portal, erp, exceptions, expected = synthetic_month(args.orders, args.accounts)
    print(
        f"synthetic month: {len(portal):,} portal orders, {len(erp):,} ERP orders, "
        f"{len(exceptions):,} open exceptions ({time.perf_counter() - began:.1f} s to build)"
    )
    rss_before = peak_rss_mib()

    began, cpu_began = time.perf_counter(), time.process_time()
    lines = reconcile_month(MONTH, portal, erp, exceptions)
    reconcile_seconds = time.perf_counter() - began
    # CPU seconds of every thread (DuckDB's included): the figure that does not depend on what
    # else the machine is doing.
    reconcile_cpu = time.process_time() - cpu_began

    began = time.perf_counter()
    summary = summarise(lines)
    summarise_seconds = time.perf_counter() - began

    began = time.perf_counter()
    open_items = unexplained(lines)
    unexplained_seconds = time.perf_counter() - began

    began = time.perf_counter()
    floor = floor_lines(portal, erp, exceptions)
    floor_seconds = time.perf_counter() - began
    if len(floor) != len(lines):
        raise SystemExit(f"the floor gave {len(floor):,} lines, reconcile_month {len(lines):,}")

    counts = outcome_counts(lines)
    wrong = {k: (counts[k], v) for k, v in expected.items() if counts[k] != v}
    if wrong:
        raise SystemExit(f"planted discrepancies not found as expected (found, planted): {wrong}")
    if summary["variance"].sum().round(2) != round(lines["difference"].sum(), 2):
        raise SystemExit("summary variance disagrees with the lines")

    print(f"reconciliation lines: {len(lines):,}; outcomes: {counts}")
    print(f"per-account summary rows: {len(summary):,}")
    print(f"unexplained: {open_items.count:,} lines, {open_items.money} at stake")
    print(f"reconcile_month: {reconcile_seconds:.2f} s (target < 10 s), {reconcile_cpu:.2f} CPU s")
    print(
        f"floor:           {floor_seconds:.2f} s (hand-written full join + CASE); "
        f"reconcile_month / floor {reconcile_seconds / floor_seconds:.2f}x"
    )
    print(f"summarise:       {summarise_seconds:.2f} s")
    print(f"unexplained:     {unexplained_seconds:.2f} s")
    print(f"peak RSS: {peak_rss_mib():,.0f} MiB (with the input frames: {rss_before:,.0f} MiB)")
    # Timings depend on the machine and on what else runs on it: say both.
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "sizes": f"{len(portal):,} portal orders, {len(erp):,} ERP orders, "
                    f"{args.accounts:,} accounts, one month",
                    "ratios": [
                        {
                            "figure": "reconcile_month",
                            "value": reconcile_seconds,
                            "floor": floor_seconds,
                            "floor_name": "DuckDB full join + CASE",
                            "unit": "s",
                            "goal": None,
                            "value_goal": 10.0,
                            "note": "the product also windows, finds duplicates, gives reasons",
                        }
                    ],
                    "absolute": [
                        {
                            "figure": "reconcile_month",
                            "value": reconcile_seconds,
                            "unit": "s",
                            "goal": 10.0,
                        },
                        {
                            "figure": "reconcile_month CPU (all threads)",
                            "value": reconcile_cpu,
                            "unit": "s",
                        },
                        {"figure": "full join floor", "value": floor_seconds, "unit": "s"},
                        {"figure": "summarise", "value": summarise_seconds, "unit": "s"},
                        {"figure": "unexplained", "value": unexplained_seconds, "unit": "s"},
                        {"figure": "peak RSS (own)", "value": peak_rss_mib(), "unit": "MB"},
                    ],
                }
            )
        )


if __name__ == "__main__":
    main()
