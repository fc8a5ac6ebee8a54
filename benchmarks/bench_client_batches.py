"""How fast the SparkLayer client moves price rows and stock levels, and what pacing costs.

Starts the embedded simulator on a free loopback port and, for each scenario, prints the rows,
the write calls (against the minimum ``ceil(rows / 500)``), the seconds, rows per second and the
time lost to rate limiting (the client's own pacing plus the portal's Retry-After). Run:

    .venv/bin/python benchmarks/bench_client_batches.py [--rows 50000] [--json PATH]

50,000 rows is the most one price list may hold (SparkLayer's hard limit of 50,000 priced
products, which the simulator enforces). The paced runs are also set beside their bound: the
seconds the calls need at the pacing rate (``calls / rate``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from b2b_pipeline.connectors.sparklayer import wire
from b2b_pipeline.connectors.sparklayer.client import BatchResult, SparkLayerClient
from b2b_pipeline.simulator.server import SimulatorServer

SITE, CLIENT, SECRET = "bench-site", "bench-client", "bench-secret"


def price_rows(count: int) -> list[dict[str, Any]]:
    return [
        {"sku": f"SKU-{n:07d}", "pricing": [{"quantity": 1, "price": 10 + n % 997 / 100}]}
        for n in range(count)
    ]


def stock_rows(count: int) -> list[dict[str, Any]]:
    return [
        {"stock_location_external_id": "default", "sku": f"SKU-{n:07d}", "stock_level": n % 50}
        for n in range(count)
    ]


def run(
    label: str,
    client: SparkLayerClient,
    rows: int,
    work: Callable[[SparkLayerClient], BatchResult | int],
    per_call: int = wire.BATCH_MAX_ITEMS,
) -> dict[str, Any]:
    client.reset_stats()
    started = time.perf_counter()
    outcome = work(client)
    seconds = time.perf_counter() - started
    stats = client.stats
    calls = outcome.calls if isinstance(outcome, BatchResult) else stats.calls
    minimum = math.ceil(rows / per_call)
    print(
        f"{label:<44} {rows:>8,} rows {calls:>5} calls (min {minimum:>4}) "
        f"{seconds:>7.2f} s {rows / seconds:>10,.0f} rows/s  "
        f"retries {stats.retries:>3}  rate-limit wait {stats.rate_limit_wait_seconds:>6.2f} s"
    )
    return {
        "label": label,
        "rows": rows,
        "calls": calls,
        "minimum": minimum,
        "seconds": seconds,
        "wait": stats.rate_limit_wait_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()
    # Each retry is logged at WARNING; the table below counts them instead.
    logging.basicConfig(level=logging.ERROR)
    server = SimulatorServer(site_id=SITE, client_id=CLIENT, client_secret=SECRET)
    server.start()
    try:
        fast = SparkLayerClient(server.url, SITE, CLIENT, SECRET, requests_per_second=1000.0)
        fast.create_price_list("bench", "Benchmark", "GBP")
        prices, stock = price_rows(args.rows), stock_rows(args.rows)
        unpaced = run(
            "patch_pricing, unpaced", fast, args.rows, lambda c: c.patch_pricing("bench", prices)
        )
        read = run(
            "iter_pricing (the whole list in one call)",
            fast,
            args.rows,
            lambda c: sum(1 for _ in c.iter_pricing("bench")),
            per_call=args.rows,
        )
        stocked = run(
            "batch_update_stock, unpaced", fast, args.rows, lambda c: c.batch_update_stock(stock)
        )

        paced = SparkLayerClient(server.url, SITE, CLIENT, SECRET, requests_per_second=20.0)
        few = min(args.rows, 20_000)
        paced_run = run(
            "patch_pricing, client paced at 20/s",
            paced,
            few,
            lambda c: c.patch_pricing("bench", prices[:few]),
        )
        requests.put(
            f"{server.url}/_sim/faults", json={"requests_per_second": 10, "burst": 5}, timeout=10
        ).raise_for_status()
        throttled = run(
            "patch_pricing, 20/s against a 10/s portal",
            paced,
            few,
            lambda c: c.patch_pricing("bench", prices[:few]),
        )
        fast.close()
        paced.close()
    finally:
        server.stop()
    if args.json:
        args.json.write_text(
            json.dumps(figures(args.rows, unpaced, read, stocked, paced_run, throttled))
        )


def figures(rows: int, *runs: dict[str, Any]) -> dict[str, Any]:
    unpaced, read, stocked, paced, throttled = runs
    ratios = [
        {
            "figure": f"{r['label']}: write calls",
            "value": r["calls"],
            "floor": r["minimum"],
            "floor_name": "minimum ceil(rows / 500)",
            "unit": "calls",
            "goal": 1.0,
        }
        for r in (unpaced, stocked, paced)
    ]
    # Paced, the calls cannot go faster than the rate once the burst (one second's worth for
    # the client, 5 for the throttled portal) is spent: their bound is (calls - burst) / rate.
    for r, rate, burst in ((paced, 20.0, 20), (throttled, 10.0, 5)):
        ratios.append(
            {
                "figure": f"{r['label']}: seconds",
                "value": r["seconds"],
                "floor": max(r["calls"] - burst, 0) / rate,
                "floor_name": f"bound: {r['calls']} calls at {rate:g}/s after a burst of {burst}",
                "unit": "s",
                "goal": None,
            }
        )
    return {
        "sizes": f"{rows:,} price rows and stock levels; {paced['rows']:,} paced",
        "ratios": ratios,
        "absolute": [
            {
                "figure": f"{r['label']} ({r['rows']:,} rows)",
                "value": r["rows"] / r["seconds"],
                "unit": "rows/s",
            }
            for r in (unpaced, read, stocked, paced, throttled)
        ]
        + [
            {
                "figure": f"{throttled['label']}: rate-limit wait",
                "value": throttled["wait"],
                "unit": "s",
            }
        ],
    }


if __name__ == "__main__":
    main()
