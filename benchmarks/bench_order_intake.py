"""Order intake end to end: 10,000 portal orders into the ERP through the real Dagster job.

Starts the embedded simulator in this process, seeds the reference ERP on a temporary SQLite
file, runs the master-data syncs (accounts and prices in the portal, as in production), then
places the orders as buyers would (``POST /_sim/orders``: 1 to 20 lines each, active SKUs,
quantities across the price breaks). Then it runs ``order_intake_job`` (one step, the
``order_intake`` multi-asset, with its default batch of at most 5,000 orders per run) until no
order is left, and prints:

- orders per second end to end (portal read, every order rule, posting, exception queue, audit
  trail, ERP number written back to the portal), and per run;
- the share of that time spent waiting on the portal's rate limit (the client's own pacing plus
  any Retry-After), from ``portal_call_stats()`` of the SparkLayer resource;
- portal calls per order, and posted vs queued (every order must be one or the other).

    .venv/bin/python benchmarks/bench_order_intake.py [--orders 10000] [--requests-per-second 20]

The bound is what the rate limit allows whatever the pipeline does: the pacing rate divided by
the portal calls one order needs (measured), in orders per second; ``--json PATH`` writes the
figures with the end-to-end rate beside it.

``--requests-per-second`` is the client's pacing (SPARKLAYER_REQUESTS_PER_SECOND, default 20 as
in production); a high value shows what the pipeline itself can do when the portal allows it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

SITE, CLIENT, SECRET = "bench-site", "bench-client", "bench-secret"


def place_orders(url: str, accounts: list[str], skus: list[str], count: int, seed: int) -> int:
    """Place ``count`` orders from random accounts; returns how many the portal took."""
    rng = np.random.default_rng(seed)
    plans = []
    for _ in range(count):
        n_lines = int(rng.integers(1, 21))
        picked = rng.choice(len(skus), n_lines, replace=False)
        plans.append(
            {
                "customer": accounts[int(rng.integers(len(accounts)))],
                "type": "order",
                "payment_method": "on_account",
                "customer_reference": f"PO-{int(rng.integers(1e6)):06d}",
                "lines": [
                    {"sku": skus[i], "quantity": int(q)}
                    for i, q in zip(picked, rng.integers(1, 60, n_lines), strict=True)
                ],
            }
        )

    session = requests.Session()

    def place(order: dict) -> bool:
        response = session.post(f"{url}/_sim/orders", json=order, timeout=30)
        if response.status_code == 403:  # over the credit limit: the buyer pays by card
            card = {**order, "payment_method": "platform_upfront"}
            response = session.post(f"{url}/_sim/orders", json=card, timeout=30)
        return response.status_code == 201

    with ThreadPoolExecutor(4) as pool:
        return sum(pool.map(place, plans))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--requests-per-second", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench_order_intake_"))
    from b2b_pipeline.simulator.server import SimulatorServer

    server = SimulatorServer(site_id=SITE, client_id=CLIENT, client_secret=SECRET)
    server.start()
    erp_url = f"sqlite:///{workdir / 'erp.sqlite'}"
    os.environ.update(
        {
            "B2B_DATA_DIR": str(workdir),
            "SPARKLAYER_BASE_URL": server.url,
            "SPARKLAYER_SITE_ID": SITE,
            "SPARKLAYER_CLIENT_ID": CLIENT,
            "SPARKLAYER_CLIENT_SECRET": SECRET,
            "SPARKLAYER_REQUESTS_PER_SECOND": str(args.requests_per_second),
            "ERP_DATABASE_URL": erp_url,
            "B2B_AUDIT_DB": str(workdir / "audit.duckdb"),
        }
    )
    import dagster as dg

    from b2b_pipeline.connectors.audit.store import AuditStore
    from b2b_pipeline.connectors.erp.gateway import ErpGateway
    from b2b_pipeline.definitions import build_definitions
    from b2b_pipeline.defs.resources import portal_call_stats, reset_portal_call_stats
    from b2b_pipeline.demo import seed_erp

    quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    erp = ErpGateway(erp_url)
    try:
        seed_erp(erp)
        defs = build_definitions()

        def run(job: str) -> dg.ExecuteInProcessResult:
            return defs.resolve_job_def(job).execute_in_process(
                run_config=quiet, instance=dg.DagsterInstance.ephemeral()
            )

        started = time.perf_counter()
        for job in ("price_sync_job", "customer_sync_job"):
            run(job)
        print(f"master data in the portal: {time.perf_counter() - started:.1f} s")

        customers = erp.read_customers()
        accounts = customers.loc[
            customers["active"] & ~customers["credit_hold"], "account_code"
        ].tolist()
        products = erp.read_products()
        skus = products.loc[products["active"], "sku"].tolist()
        started = time.perf_counter()
        placed = place_orders(server.url, accounts, skus, args.orders, args.seed)
        print(
            f"orders waiting in the portal: {placed:,} from {len(accounts)} accounts "
            f"(placed in {time.perf_counter() - started:.1f} s)"
        )

        reset_portal_call_stats()
        runs = []
        started = time.perf_counter()
        while True:
            run_started = time.perf_counter()
            result = run("order_intake_job")
            # The one order intake step reports what it handled on ``erp_sales_orders``.
            handled = next(
                e.materialization.metadata["received"].value
                for e in result.get_asset_materialization_events()
                if e.materialization.asset_key.to_user_string() == "erp_sales_orders"
            )
            if not handled:
                break
            runs.append((handled, time.perf_counter() - run_started))
        seconds = time.perf_counter() - started
        stats = portal_call_stats()

        window = (dt.datetime(2000, 1, 1, tzinfo=dt.UTC), dt.datetime(2100, 1, 1, tzinfo=dt.UTC))
        posted = len(erp.read_sales_orders(*window))
        queued = AuditStore(workdir / "audit.duckdb").exceptions()
        queued_orders = queued.loc[queued["entity"] == "order", "entity_key"].nunique()
    finally:
        erp.dispose()
        server.stop()

    handled = sum(n for n, _ in runs)
    print(f"\norder intake at {args.requests_per_second:g} requests/s (client pacing):")
    for number, (n, s) in enumerate(runs, 1):
        print(f"  run {number}: {n:>6,} orders in {s:7.1f} s  {n / s:8.1f} orders/s")
    print(
        f"  total: {handled:,} orders in {seconds:.1f} s (with the final empty run): "
        f"{handled / seconds:.1f} orders/s end to end"
    )
    wait = stats.rate_limit_wait_seconds
    print(
        f"  portal: {stats.calls:,} calls ({stats.calls / max(handled, 1):.2f} per order), "
        f"{stats.retries} retries; waiting on the rate limit {wait:.1f} s = "
        f"{wait / seconds:.0%} of the time"
    )
    print(f"  outcome: {posted:,} posted + {queued_orders:,} queued = {posted + queued_orders:,}")
    per_order = stats.calls / max(handled, 1)
    bound = args.requests_per_second / per_order
    print(
        f"  rate-limit bound: {args.requests_per_second:g} calls/s / {per_order:.2f} calls per "
        f"order = {bound:.1f} orders/s; end to end {handled / seconds / bound:.0%} of it"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "sizes": f"{handled:,} orders at {args.requests_per_second:g} requests/s, "
                    f"{len(runs)} run(s) + the final empty one",
                    "ratios": [
                        {
                            "figure": "intake orders/s end to end",
                            "value": handled / seconds,
                            "floor": bound,
                            "floor_name": "rate-limit bound (rate / calls per order)",
                            "unit": "orders/s",
                            "goal": None,
                            "higher_is_better": True,
                            "note": "1: the portal's rate limit is all that holds it back",
                        }
                    ],
                    "absolute": [
                        {
                            "figure": "orders/s end to end",
                            "value": handled / seconds,
                            "unit": "orders/s",
                        },
                        {"figure": "portal calls per order", "value": per_order, "unit": ""},
                        {
                            "figure": "share of the time waiting on the rate limit",
                            "value": 100 * wait / seconds,
                            "unit": "%",
                        },
                        {"figure": "intake wall time", "value": seconds, "unit": "s"},
                        {
                            "figure": "posted + queued = placed",
                            "value": posted + queued_orders == placed == handled,
                            "unit": "",
                        },
                    ],
                }
            )
        )
    if posted + queued_orders != placed or handled != placed:
        print("  MISMATCH: every order must be posted or queued exactly once", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
