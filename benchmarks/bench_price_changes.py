"""Price change detection at scale: a million price breaks, synthetic, in memory.

Times :func:`price_changes` as the price sync calls it (with the price lists, so customer-specific
lists are compared as their effective breaks, the ERP's answer at every break of them and their
group list, computed inside the same DuckDB query) and :func:`pricing_batches` (the PATCH bodies)
against a portal snapshot after 1% of the ERP's break prices changed, and prints seconds, the
process's peak resident memory (DuckDB allocates outside Python, so ``tracemalloc`` would not
see it) and the PATCH calls the batches need against the minimum, ``sum over lists of
ceil(changed SKUs / 500)``. Targets: under 1 s on 2 cores, under 2 GB. For comparison it also
times the comparison of the raw ERP lists (what the sync did before the effective lists) and,
as the floor, one hand-written DuckDB ``FULL OUTER JOIN`` of the raw ERP breaks with the
portal snapshot that returns the changed (list, SKU) pairs and nothing else (no effective
lists, no PATCH bodies), checked to find the same pairs as the raw comparison.

    .venv/bin/python benchmarks/bench_price_changes.py [--rows 1000000] [--changed 0.01]
                                                       [--json PATH]

Wall time depends on what else the machine runs: the CPU time (all threads) and the load
average are printed with it.

The catalogue mixes a few large group lists with many small customer-specific ones (each over
one group list, most of its prices a little under the group's, some over), two quantity breaks
per SKU. Before printing timings the script checks the result against an independent pandas
computation of the effective lists: exactly the (list, SKU) pairs whose effective breaks changed
are found (a repriced group SKU also changes the customer lists over it that price it, where
the ERP's answer moves), each with its complete new breaks.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from b2b_pipeline.domain.price_lists import PRICING_BATCH_SIZE, price_changes, pricing_batches

KEYS = ["price_list_code", "sku"]

BREAKS = np.array([1, 10])  # minimum quantities of each SKU's two breaks
GROUP_LISTS = 8
CUSTOMER_LIST_SKUS = 50  # SKUs on each customer-specific list
GROUP_SHARE = 0.8  # share of the rows on group lists


def synthetic_catalogue(rows: int, seed: int = 11) -> tuple[pd.DataFrame, pd.DataFrame]:
    """ERP price breaks (``price_list_code``, ``sku``, ``min_quantity``, ``unit_price``) and the
    price lists (``code``, ``parent_code``): customer list ``i`` sits on group list ``i % 8``."""
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
    catalogue = catalogue.reset_index(drop=True)

    lists = pd.DataFrame(
        {
            "code": np.concatenate([group_codes, customer_codes]),
            "parent_code": np.concatenate(
                [
                    np.full(GROUP_LISTS, None, dtype=object),
                    group_codes[np.arange(customer_lists) % GROUP_LISTS],
                ]
            ),
        }
    )
    # Contract prices: 15% under to 2% over the group list's, so at some breaks the group list
    # is the cheaper one and the effective breaks differ from the customer list's own.
    parent = catalogue["price_list_code"].map(lists.set_index("code")["parent_code"])
    on_customer_list = parent.notna().to_numpy()
    customer_rows = catalogue[on_customer_list]
    group_price = (
        customer_rows[["sku", "min_quantity"]]
        .assign(price_list_code=parent[on_customer_list].to_numpy())
        .merge(catalogue, how="left", on=["price_list_code", "sku", "min_quantity"])["unit_price"]
    )
    factor = rng.uniform(0.85, 1.02, len(customer_rows))
    catalogue.loc[on_customer_list, "unit_price"] = np.round(group_price.to_numpy() * factor, 2)
    return catalogue, lists


def effective_reference(erp: pd.DataFrame, lists: pd.DataFrame) -> pd.DataFrame:
    """The effective lists computed independently with pandas (slow, for checking only)."""
    parents = lists.dropna(subset=["parent_code"]).set_index("code")["parent_code"]
    is_child = erp["price_list_code"].isin(parents.index)
    child = erp[is_child]
    pairs = child[KEYS].drop_duplicates()
    pairs["parent_code"] = pairs["price_list_code"].map(parents)
    from_parent = pairs.merge(
        erp.rename(columns={"price_list_code": "parent_code"}), on=["parent_code", "sku"]
    ).drop(columns="parent_code")
    candidates = pd.concat([child, from_parent], ignore_index=True)
    per_quantity = (
        candidates.groupby([*KEYS, "min_quantity"], as_index=False)["unit_price"]
        .min()
        .sort_values([*KEYS, "min_quantity"])
    )
    per_quantity["unit_price"] = per_quantity.groupby(KEYS)["unit_price"].cummin()
    return pd.concat([erp[~is_child], per_quantity], ignore_index=True)


def changed_pairs(before: pd.DataFrame, after: pd.DataFrame) -> set[tuple[str, str]]:
    """(list, SKU) pairs whose breaks differ between two sets of breaks."""
    both = before.merge(after, how="outer", on=[*KEYS, "min_quantity"], indicator=True)
    differs = (both["_merge"] != "both") | (
        both["unit_price_x"].round(4) != both["unit_price_y"].round(4)
    )
    return set(zip(both.loc[differs, "price_list_code"], both.loc[differs, "sku"], strict=True))


def as_portal_snapshot(erp: pd.DataFrame) -> pd.DataFrame:
    return erp.rename(
        columns={
            "price_list_code": "price_list_slug",
            "min_quantity": "quantity",
            "unit_price": "price",
        }
    )


# The floor: the changed (list, SKU) pairs of the raw lists, one join, nothing else.
FULL_JOIN_SQL = """
SELECT DISTINCT coalesce(e.price_list_code, p.price_list_slug) AS price_list_slug,
       coalesce(e.sku, p.sku) AS sku
FROM erp e FULL OUTER JOIN portal p
  ON e.price_list_code = p.price_list_slug AND e.sku = p.sku AND e.min_quantity = p.quantity
WHERE e.unit_price IS DISTINCT FROM p.price
"""


def full_join_floor(erp: pd.DataFrame, portal: pd.DataFrame) -> pd.DataFrame:
    connection = duckdb.connect(":memory:")
    try:
        connection.register("erp", erp)
        connection.register("portal", portal)
        return connection.sql(FULL_JOIN_SQL).df()
    finally:
        connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--changed", type=float, default=0.01, help="share of rows repriced")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()

    erp_before, lists = synthetic_catalogue(args.rows)
    effective_before = effective_reference(erp_before, lists)
    portal = as_portal_snapshot(effective_before).copy()
    raw_portal = as_portal_snapshot(erp_before).copy()
    erp = erp_before.copy()
    rng = np.random.default_rng(5)
    repriced = rng.choice(len(erp), int(len(erp) * args.changed), replace=False)
    erp.loc[repriced, "unit_price"] = np.round(erp.loc[repriced, "unit_price"] + 0.05, 2)
    effective_after = effective_reference(erp, lists)
    expected = changed_pairs(effective_before, effective_after)
    repriced_pairs = len(erp.loc[repriced, KEYS].drop_duplicates())
    baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    detect, batch, cpu, raw, floor = [], [], [], [], []
    for _ in range(args.repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        changes = price_changes(erp, portal, erp_price_lists=lists)
        detected = time.perf_counter()
        batches = pricing_batches(changes)
        batched = time.perf_counter()
        detect.append(detected - started)
        batch.append(batched - detected)
        cpu.append(time.process_time() - started_cpu)  # all threads, DuckDB's included
        raw_started = time.perf_counter()
        raw_changes = price_changes(erp, raw_portal)  # the raw lists, as before
        raw.append(time.perf_counter() - raw_started)
        floor_started = time.perf_counter()
        floor_pairs = full_join_floor(erp, raw_portal)
        floor.append(time.perf_counter() - floor_started)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    # Correctness first: exactly the pairs whose effective breaks changed, each with its
    # complete new breaks.
    found = set(zip(changes["price_list_slug"], changes["sku"], strict=True))
    if found != expected:
        print(
            "FAIL: the changed SKUs found differ from those whose breaks changed", file=sys.stderr
        )
        return 1
    on_customer_lists = changes["price_list_slug"].str.startswith("PL-CUST")
    for sample in (changes[on_customer_lists].iloc[0], changes[~on_customer_lists].iloc[0]):
        truth = effective_after[
            (effective_after["price_list_code"] == sample["price_list_slug"])
            & (effective_after["sku"] == sample["sku"])
        ].sort_values("min_quantity")
        sent = [(b["quantity"], round(b["price"], 4)) for b in sample["pricing"]]
        if sent != list(zip(truth["min_quantity"], truth["unit_price"].round(4), strict=True)):
            print("FAIL: a changed SKU was not sent with its new breaks", file=sys.stderr)
            return 1

    raw_found = set(zip(raw_changes["price_list_slug"], raw_changes["sku"], strict=True))
    if raw_found != set(zip(floor_pairs["price_list_slug"], floor_pairs["sku"], strict=True)):
        print("FAIL: the full-join floor and the raw comparison disagree", file=sys.stderr)
        return 1

    calls = sum(math.ceil(len(items) / PRICING_BATCH_SIZE) for items in batches.values())
    minimum = sum(
        math.ceil(n / PRICING_BATCH_SIZE)
        for n in pd.Series([slug for slug, _ in expected]).value_counts()
    )
    best_detect, best_batch = min(detect), min(batch)
    print(
        f"rows: {len(erp):,} ERP breaks on {erp['price_list_code'].nunique():,} lists "
        f"({int(lists['parent_code'].notna().sum()):,} customer-specific), {len(portal):,} in "
        f"the portal snapshot; cores: {os.cpu_count()}"
    )
    print(
        f"repriced: {len(repriced):,} rows on {repriced_pairs:,} list x SKU pairs -> "
        f"{len(changes):,} changed SKUs on {len(batches):,} lists"
    )
    print(
        f"price_changes:   {best_detect:.3f} s with the effective lists (best of "
        f"{args.repeat}; median {float(np.median(detect)):.3f} s); raw lists {min(raw):.3f} s"
    )
    print(f"pricing_batches: {best_batch:.3f} s (best of {args.repeat})")
    print(
        f"floor:           {min(floor):.3f} s (hand-written DuckDB full join, changed pairs "
        f"only); change set / floor {(best_detect + best_batch) / min(floor):.2f}x, raw lists "
        f"/ floor {min(raw) / min(floor):.2f}x"
    )
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
    if args.json:
        total = best_detect + best_batch
        args.json.write_text(
            json.dumps(
                {
                    "sizes": f"{len(erp):,} ERP price breaks, {args.changed:.0%} repriced, "
                    f"best of {args.repeat}",
                    "ratios": [
                        {
                            "figure": "change set with the effective lists (as the sync runs)",
                            "value": total,
                            "floor": min(floor),
                            "floor_name": "DuckDB full join",
                            "unit": "s",
                            "goal": None,
                            "value_goal": 1.0,
                            "note": "effective lists and PATCH bodies; the floor finds pairs",
                        },
                        {
                            "figure": "change set of the raw lists",
                            "value": min(raw),
                            "floor": min(floor),
                            "floor_name": "DuckDB full join",
                            "unit": "s",
                            "goal": None,
                        },
                        {
                            "figure": "PATCH calls of the change set",
                            "value": calls,
                            "floor": minimum,
                            "floor_name": "minimum (sum of ceil(SKUs / 500) per list)",
                            "unit": "calls",
                            "goal": 1.0,
                        },
                    ],
                    "absolute": [
                        {"figure": "change set total", "value": total, "unit": "s", "goal": 1.0},
                        {"figure": "price_changes", "value": best_detect, "unit": "s"},
                        {"figure": "pricing_batches", "value": best_batch, "unit": "s"},
                        {"figure": "DuckDB full join floor", "value": min(floor), "unit": "s"},
                        {"figure": "CPU time (all threads)", "value": min(cpu), "unit": "s"},
                        {"figure": "peak RSS (own)", "value": peak_rss, "unit": "MB", "goal": 2048},
                        {"figure": "changed SKUs", "value": len(changes), "unit": ""},
                    ],
                }
            )
        )
    print("targets met" if within else "TARGETS MISSED")
    return 0 if within else 2


if __name__ == "__main__":
    sys.exit(main())
