"""Pulling every purchase from the portal: the project's client against a plain ``requests`` loop
(the floor) and dlt's ``rest_api`` source (the peer), on the same embedded simulator.

    .venv/bin/python benchmarks/bench_purchases_pull.py [--purchases 20000] [--repeat 3]
                                                        [--dlt-pipeline] [--json PATH]

Places ``--purchases`` orders in the embedded simulator (``POST /_sim/orders``, 1 to 5 lines,
from a few customers), then reads them all back, unpaced, ``--repeat`` times each in turn:

- **client**: ``SparkLayerClient.iter_purchases()`` as the order intake reads them (pages of
  500 that overlap, a contiguity check, the head re-read at the end, each id once);
- **requests** (the floor): one ``requests.Session`` with the bearer token,
  ``GET /api/v1/purchases?limit=500&offset=...`` until a short page; nothing checked;
- **dlt**: ``dlt.sources.rest_api.rest_api_source`` with its offset paginator over the same
  endpoint (bearer auth, ``Site-Id`` header), the resource iterated in this process (extract
  only, no destination); with ``--dlt-pipeline`` also a full ``dlt.pipeline`` run into a DuckDB
  file (extract, normalise, load), what a dlt user would deploy.

dlt is an optional benchmark extra (``pip install .[bench]``); without it the dlt rows say so.
Every route must return exactly the placed purchase ids before any figure is printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from b2b_pipeline.connectors.sparklayer import wire
from b2b_pipeline.connectors.sparklayer.client import SparkLayerClient
from b2b_pipeline.connectors.sparklayer.purchases import purchase_id
from b2b_pipeline.simulator.server import SimulatorServer

SITE, CLIENT, SECRET = "bench-site", "bench-client", "bench-secret"
PAGE = wire.PURCHASES_LIMIT_MAX  # 500, the portal's largest page
BUYERS = 20
CALLS: dict[str, int] = {}  # GET calls of the last pull of each route, token fetch excluded


def place_purchases(url: str, count: int) -> set[str]:
    """``count`` orders from ``BUYERS`` self-registered companies (no group: ordering allowed),
    paid by card so no credit limit applies; each line priced explicitly (no price lists)."""
    session = requests.Session()
    buyers = []
    for n in range(BUYERS):
        response = session.post(
            f"{url}/_sim/customers/register",
            json={"company_name": f"Buyer {n}", "email": f"buyer{n}@example.com"},
            timeout=30,
        )
        response.raise_for_status()
        buyers.append(response.json()["id"])

    def place(n: int) -> str:
        lines = [
            {"sku": f"SKU-{(n * 31 + k * 7) % 5000:05d}", "quantity": 1 + k, "unit_price": 9.5 + k}
            for k in range(1 + n % 5)
        ]
        response = session.post(
            f"{url}/_sim/orders",
            json={
                "customer": buyers[n % BUYERS],
                "type": "order",
                "payment_method": "platform_upfront",
                "customer_reference": f"PO-PULL-{n:06d}",
                "lines": lines,
            },
            timeout=30,
        )
        response.raise_for_status()
        return str(purchase_id(response.json()))

    with ThreadPoolExecutor(4) as pool:
        return set(pool.map(place, range(count)))


def pull_client(url: str) -> list[str]:
    client = SparkLayerClient(url, SITE, CLIENT, SECRET, requests_per_second=100_000.0)
    try:
        ids = [str(purchase_id(p)) for p in client.iter_purchases()]
        CALLS["client"] = client.stats.calls - client.stats.token_fetches
        return ids
    finally:
        client.close()


def bearer_token(url: str) -> str:
    response = requests.post(
        f"{url}{wire.TOKEN_PATH}",
        json=wire.token_request(CLIENT, SECRET),
        headers={wire.SITE_HEADER: SITE},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()[wire.TOKEN_FIELD]


def pull_requests(url: str) -> list[str]:
    """The floor: offsets of 500 until a short page, nothing else."""
    session = requests.Session()
    session.headers.update({wire.SITE_HEADER: SITE, "Authorization": f"Bearer {bearer_token(url)}"})
    ids: list[str] = []
    offset = 0
    while True:
        response = session.get(
            f"{url}{wire.PURCHASES_PATH}", params={"limit": PAGE, "offset": offset}, timeout=30
        )
        response.raise_for_status()
        page = response.json()
        ids.extend(str(purchase_id(p)) for p in page)
        if len(page) < PAGE:
            CALLS["requests"] = offset // PAGE + 1
            return ids
        offset += PAGE


def dlt_config(url: str) -> dict[str, Any]:
    """The rest_api source over the same endpoint: offset paginator, bare-array pages."""
    return {
        "client": {
            "base_url": url,
            "headers": {wire.SITE_HEADER: SITE},
            "auth": {"type": "bearer", "token": bearer_token(url)},
        },
        "resources": [
            {
                "name": "purchases",
                "endpoint": {
                    "path": wire.PURCHASES_PATH,
                    "data_selector": "$",
                    "paginator": {
                        "type": "offset",
                        "limit": PAGE,
                        "offset_param": "offset",
                        "limit_param": "limit",
                        # The list has no total: dlt stops at the first empty page.
                        "total_path": None,
                        "stop_after_empty_page": True,
                    },
                },
            }
        ],
    }


def pull_dlt(url: str) -> list[str]:
    from dlt.sources.rest_api import rest_api_source

    source = rest_api_source(dlt_config(url))  # type: ignore[arg-type]
    return [str(purchase_id(p)) for p in source.resources["purchases"]]


def pull_dlt_pipeline(url: str, folder: Path) -> int:
    import dlt
    from dlt.sources.rest_api import rest_api_source

    name = f"pull_{time.monotonic_ns()}"
    pipeline = dlt.pipeline(
        pipeline_name=name,
        pipelines_dir=str(folder / "pipelines"),
        destination=dlt.destinations.duckdb(str(folder / f"{name}.duckdb")),
        dataset_name="portal",
    )
    info = pipeline.run(rest_api_source(dlt_config(url)))  # type: ignore[arg-type]
    info.raise_on_failed_jobs()
    with pipeline.sql_client() as sql:
        rows = sql.execute_sql("SELECT count(*) FROM purchases")
    return int(rows[0][0]) if rows else 0


def timed(work: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--purchases", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3, help="pulls per route; best is kept")
    parser.add_argument("--dlt-pipeline", action="store_true", help="also dlt into DuckDB")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # dlt logs each page at INFO otherwise
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "ERROR")

    try:
        import dlt  # noqa: F401

        have_dlt = True
    except ImportError:
        have_dlt = False

    load_before = os.getloadavg()
    server = SimulatorServer(site_id=SITE, client_id=CLIENT, client_secret=SECRET)
    server.start()
    routes: dict[str, Callable[[], list[str]]] = {
        "client": lambda: pull_client(server.url),
        "requests": lambda: pull_requests(server.url),
    }
    if have_dlt:
        routes["dlt"] = lambda: pull_dlt(server.url)
    seconds: dict[str, list[float]] = {name: [] for name in routes}
    pipeline_s: float | None = None
    try:
        started = time.perf_counter()
        placed = place_purchases(server.url, args.purchases)
        place_s = time.perf_counter() - started
        print(f"placed {len(placed):,} purchases in {place_s:.1f} s")
        # Alternate the routes, so a neighbour's burst on the shared machine hits all alike.
        for _ in range(args.repeat):
            for name, pull in routes.items():
                took, ids = timed(pull)
                if len(ids) != len(placed) or set(ids) != placed:
                    print(f"FAIL: {name} did not return exactly the placed purchases")
                    return 1
                seconds[name].append(took)
        # The pulls' peak, before dlt's pipeline (its normalise and load take far more).
        pulls_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if have_dlt and args.dlt_pipeline:
            with tempfile.TemporaryDirectory() as folder:
                pipeline_s, loaded = timed(lambda: pull_dlt_pipeline(server.url, Path(folder)))
            if loaded != len(placed):
                print(f"FAIL: the dlt pipeline loaded {loaded:,} of {len(placed):,}")
                return 1
    finally:
        server.stop()
    load_after = os.getloadavg()

    best = {name: min(times) for name, times in seconds.items()}
    n = len(placed)
    print(
        f"\npulling {n:,} purchases (pages of {PAGE}), best of {args.repeat}; load "
        f"{load_before[0]:.2f} -> {load_after[0]:.2f}"
    )
    print("ratios:")
    print(f"  client / plain requests (floor): {best['client'] / best['requests']:5.2f}x")
    if have_dlt:
        print(f"  dlt rest_api / client:           {best['dlt'] / best['client']:5.2f}x")
        if pipeline_s is not None:
            print(f"  dlt pipeline into DuckDB / client: {pipeline_s / best['client']:5.2f}x")
    else:
        print("  dlt rest_api: not installed (pip install .[bench])")
    print(f"  GET calls: client {CALLS['client']}, plain requests {CALLS['requests']}")
    print("absolute:")
    for name, took in best.items():
        median = statistics.median(seconds[name])
        print(f"  {name:<9} {took:6.2f} s  {n / took:9,.0f} purchases/s  (median {median:.2f} s)")
    if pipeline_s is not None:
        print(f"  dlt pipeline into DuckDB {pipeline_s:6.2f} s  {n / pipeline_s:9,.0f} purchases/s")

    if args.json:
        figures = [
            {
                "figure": "client pull / plain requests loop",
                "value": best["client"],
                "floor": best["requests"],
                "floor_name": "plain requests loop",
                "unit": "s",
                "goal": 1.1,
                "note": "goal set by this report (issue 11 measured 0.98x); the client's pages "
                "overlap and it re-reads the head, the loop only adds 500",
            }
        ]
        if have_dlt:
            figures.append(
                {
                    "figure": "client pull / dlt rest_api (resource iterated)",
                    "value": best["client"],
                    "floor": best["dlt"],
                    "floor_name": "dlt rest_api source",
                    "unit": "s",
                    "goal": 1.0,
                    "peer": True,
                    "note": "goal set by this report: no slower than the peer's extract alone",
                }
            )
        if pipeline_s is not None:
            figures.append(
                {
                    "figure": "client pull / dlt pipeline into DuckDB",
                    "value": best["client"],
                    "floor": pipeline_s,
                    "floor_name": "dlt pipeline into DuckDB",
                    "unit": "s",
                    "goal": 1.0,
                    "peer": True,
                    "note": "dlt's extract, normalise and load of the same pages; goal set by "
                    "this report",
                }
            )
        absolute = [
            {"figure": f"{name} pull of {n:,} purchases", "value": took, "unit": "s"}
            for name, took in best.items()
        ]
        absolute += [
            {"figure": f"{name} throughput", "value": n / took, "unit": "purchases/s"}
            for name, took in best.items()
        ]
        absolute += [
            {"figure": f"{name} GET calls", "value": CALLS[name], "unit": "calls"}
            for name in ("client", "requests")
        ]
        if pipeline_s is not None:
            absolute.append(
                {"figure": "dlt pipeline into DuckDB", "value": pipeline_s, "unit": "s"}
            )
        absolute.append(
            {
                "figure": "peak RSS of the pulls, before the dlt pipeline (simulator included)",
                "value": pulls_rss_mb,
                "unit": "MB",
            }
        )
        args.json.write_text(
            json.dumps(
                {
                    "sizes": f"{n:,} purchases, pages of {PAGE}, best of {args.repeat}",
                    "ratios": figures,
                    "absolute": absolute,
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
