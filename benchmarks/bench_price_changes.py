"""Price change detection at scale: a million price breaks, synthetic, in memory.

Times :func:`price_changes` (the DuckDB full outer join) and :func:`pricing_batches` (the PATCH
bodies) against a portal snapshot after 1% of the ERP's break prices changed, and prints
seconds, the process's peak resident memory (DuckDB allocates outside Python, so
``tracemalloc`` would not see it) and the PATCH calls the batches need against the minimum,
``sum over lists of ceil(changed SKUs / 500)``. Targets: under 1 s on 2 cores, under 2 GB.

    .venv/bin/python benchmarks/bench_price_changes.py [--rows 1000000] [--changed 0.01]

Wall time depends on what else the machine runs: the CPU time (all threads) and the load
average are printed with it.

The catalogue mixes a few large group lists with many small customer-specific ones, two
quantity breaks per SKU. Before printing timings the script checks that exactly the SKUs whose
price it changed are found, each with its complete new breaks.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import time

import numpy as np
import pandas as pd

from b2b_pipeline.domain.price_lists import PRICING_BATCH_SIZE, price_changes, pricing_batches

BREAKS = np.array([1, 10])  # minimum quantities of each SKU's two breaks
GROUP_LISTS = 8
CUSTOMER_LIST_SKUS = 50  # SKUs on each customer-specific list
GROUP_SHARE = 0.8  # share of the rows on group lists


def synthetic_catalogue(rows: int, seed: int = 11) -> pd.DataFrame:
    """ERP price breaks: ``price_list_code``, ``sku``, ``min_quantity``, ``unit_price``."""
    rng = np.random.default_rng(seed)
    group_skus = int(rows * GROUP_SHARE) // (GROUP_LISTS * len(BREAKS))
    customer_lists = (rows - group_skus * GROUP_LISTS * len(BREAKS)) // (
        CUSTOMER_LIST_SKUS * len(BREAKS)
    )
    sku_names = pd.Series(np.arange(group_skus)).map("SKU-{:06d}".format).to_numpy()

    group_codes = np.array([f"PL-GROUP-{i:02d}" for i in range(GROUP_LISTS)])
    group = pd.DataFrame(
        {
            "price_list_code": np.repeat(group_codes, group_skus * len(BREAKS)),
            "sku": np.tile(np.repeat(sku_names, len(BREAKS)), GROUP_LISTS),
        }
    )
    customer_codes = pd.Series(np.arange(customer_lists)).map("PL-CUST-{:05d}".format).to_numpy()
    customer_skus = sku_names[rng.integers(0, group_skus, customer_lists * CUSTOMER_LIST_SKUS)]
    customer = pd.DataFrame(
        {
            "price_list_code": np.repeat(customer_codes, CUSTOMER_LIST_SKUS * len(BREAKS)),
            "sku": np.repeat(customer_skus, len(BREAKS)),
        }
    )
    catalogue = pd.concat([group, customer], ignore_index=True)
    # A customer list may draw the same SKU twice; keep the key unique as the ERP's PK does.
    catalogue["min_quantity"] = np.tile(BREAKS, len(catalogue) // len(BREAKS))
    catalogue = catalogue.drop_duplicates(["price_list_code", "sku", "min_quantity"])
    catalogue["unit_price"] = np.round(rng.uniform(0.5, 500, len(catalogue)), 2)
    return catalogue.reset_index(drop=True)


def as_portal_snapshot(erp: pd.DataFrame) -> pd.DataFrame:
    return erp.rename(
        columns={
            "price_list_code": "price_list_slug",
            "min_quantity": "quantity",
            "unit_price": "price",
        }
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--changed", type=float, default=0.01, help="share of rows repriced")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    erp_before = synthetic_catalogue(args.rows)
    portal = as_portal_snapshot(erp_before).copy()
    erp = erp_before.copy()
    rng = np.random.default_rng(5)
    repriced = rng.choice(len(erp), int(len(erp) * args.changed), replace=False)
    erp.loc[repriced, "unit_price"] = np.round(erp.loc[repriced, "unit_price"] + 0.05, 2)
    expected = erp.loc[repriced, ["price_list_code", "sku"]].drop_duplicates()
    baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    detect, batch, cpu = [], [], []
    for _ in range(args.repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        changes = price_changes(erp, portal)
        detected = time.perf_counter()
        batches = pricing_batches(changes)
        batched = time.perf_counter()
        detect.append(detected - started)
        batch.append(batched - detected)
        cpu.append(time.process_time() - started_cpu)  # all threads, DuckDB's included
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    # Correctness first: exactly the repriced SKUs, each with its complete new breaks.
    found = set(zip(changes["price_list_slug"], changes["sku"], strict=True))
    if found != set(zip(expected["price_list_code"], expected["sku"], strict=True)):
        print("FAIL: the changed SKUs found differ from the SKUs repriced", file=sys.stderr)
        return 1
    sample = changes.iloc[len(changes) // 2]
    truth = erp[
        (erp["price_list_code"] == sample["price_list_slug"]) & (erp["sku"] == sample["sku"])
    ]
    if [b["price"] for b in sample["pricing"]] != truth.sort_values("min_quantity")[
        "unit_price"
    ].tolist():
        print("FAIL: a changed SKU was not sent with its new breaks", file=sys.stderr)
        return 1

    calls = sum(math.ceil(len(items) / PRICING_BATCH_SIZE) for items in batches.values())
    minimum = sum(
        math.ceil(n / PRICING_BATCH_SIZE) for n in expected.groupby("price_list_code").size()
    )
    best_detect, best_batch = min(detect), min(batch)
    print(
        f"rows: {len(erp):,} ERP breaks on {erp['price_list_code'].nunique():,} lists, "
        f"{len(portal):,} in the portal snapshot; cores: {os.cpu_count()}"
    )
    print(
        f"repriced: {len(repriced):,} rows -> {len(changes):,} changed SKUs on "
        f"{len(batches):,} lists"
    )
    print(
        f"price_changes:   {best_detect:.3f} s (best of {args.repeat}; "
        f"median {float(np.median(detect)):.3f} s)"
    )
    print(f"pricing_batches: {best_batch:.3f} s (best of {args.repeat})")
    print(
        f"total:           {best_detect + best_batch:.3f} s (target < 1 s); CPU time "
        f"{min(cpu):.3f} s over all threads; load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"peak RSS:        {peak_rss:,.0f} MB (data synthesised: {baseline_rss:,.0f} MB; "
        f"target < 2048 MB)"
    )
    print(
        f"PATCH calls:     {calls:,} vs minimum {minimum:,} "
        f"(sum over lists of ceil(changed SKUs / {PRICING_BATCH_SIZE}))"
    )
    within = best_detect + best_batch < 1.0 and peak_rss < 2048 and calls == minimum
    print("targets met" if within else "TARGETS MISSED")
    return 0 if within else 2


if __name__ == "__main__":
    sys.exit(main())
