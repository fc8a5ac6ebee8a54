"""Audit store speed on a realistic scale: prints seconds for each step.

    .venv/bin/python benchmarks/bench_audit.py [--events 1000000] [--lines 1000000]

Targets (architecture.md, audit store): 1M events appended < 5 s, verify over 1M < 10 s, each
finance view over a month of 1M reconciliation lines well under a second or two.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from b2b_pipeline.connectors.audit.store import AuditStore
from b2b_pipeline.domain.exceptions import exception_frame

T = TypeVar("T")
OUTCOMES = np.array(
    ["MATCHED"] * 90
    + ["AMOUNT_MISMATCH"] * 4
    + ["MISSING_IN_ERP"] * 3
    + ["MISSING_IN_PORTAL"] * 2
    + ["EXCEPTION_OPEN"]
)


def timed(label: str, step: Callable[[], T]) -> T:
    """Run ``step``, printing wall-clock seconds and the CPU seconds of this process (all
    DuckDB threads), which tell a slow step from a busy machine."""
    started, cpu_started = time.perf_counter(), time.process_time()
    result = step()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    print(f"{label:<58} {wall:8.3f} s wall {cpu:8.3f} s cpu")
    return result


def order_events(count: int) -> pd.DataFrame:
    keys = pd.Series(np.arange(count)).astype(str)
    return pd.DataFrame(
        {
            "run_id": "bench-run",
            "entity": "order",
            "entity_key": "SL-" + keys,
            "action": "posted",
            "category": None,
            "detail": '{"erp_order_no": "100234", "gross": "1234.50", "currency": "GBP"}',
        }
    )


def reconciliation_lines(count: int, rng: np.random.Generator) -> pd.DataFrame:
    outcome = rng.choice(OUTCOMES, count)
    portal_gross = rng.uniform(10, 5000, count).round(2)
    erp_gross = np.where(outcome == "AMOUNT_MISMATCH", portal_gross + 1.5, portal_gross)
    keys = pd.Series(np.arange(count)).astype(str)
    return pd.DataFrame(
        {
            "portal_order_id": ("SL-" + keys).where(outcome != "MISSING_IN_PORTAL"),
            "erp_order_no": keys.where(~np.isin(outcome, ["MISSING_IN_ERP", "EXCEPTION_OPEN"])),
            "account_code": "ACC" + pd.Series(rng.integers(0, 2000, count)).astype(str),
            "currency": rng.choice(["GBP", "EUR"], count),
            "portal_gross": np.where(outcome == "MISSING_IN_PORTAL", np.nan, portal_gross),
            "erp_gross": np.where(
                np.isin(outcome, ["MISSING_IN_ERP", "EXCEPTION_OPEN"]), np.nan, erp_gross
            ),
            "outcome": outcome,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--exceptions", type=int, default=10_000)
    parser.add_argument("--skus", type=int, default=100_000)
    args = parser.parse_args()
    rng = np.random.default_rng(7)

    with tempfile.TemporaryDirectory() as folder:
        store = AuditStore(Path(folder) / "audit.duckdb")
        store.ensure_schema()
        events = order_events(args.events)
        timed(f"append {args.events:,} events (one batch)", lambda: store.append_events(events))
        timed(
            f"append 100 batches of 1,000 events onto {args.events:,}",
            lambda: [store.append_events(events.head(1000)) for _ in range(100)],
        )
        result = timed(f"verify {args.events + 100_000:,} events", store.verify)
        assert result.ok, result.problems

        lines = reconciliation_lines(args.lines, rng)
        timed(
            f"write {args.lines:,} reconciliation lines for one month",
            lambda: store.write_reconciliation_lines("2025-03", lines, run_id="bench-run"),
        )
        postings = lines.dropna(subset=["portal_order_id", "erp_order_no"]).assign(
            posted_at=datetime(2025, 3, 15, tzinfo=UTC),
            payment_method="on_account",
            erp_status="TO_BE_INVOICED",
        )
        timed(
            f"record {len(postings):,} order postings",
            lambda: store.record_order_postings(postings, run_id="bench-run"),
        )
        problems = exception_frame(
            pd.DataFrame(
                {
                    "entity": "order",
                    "entity_key": "SL-" + pd.Series(np.arange(args.exceptions)).astype(str),
                    "reason_code": "PRICE_MISMATCH",
                    "message": "Portal total 120.00 GBP differs from the ERP's 118.50 GBP.",
                }
            )
        )
        timed(
            f"open {args.exceptions:,} exceptions",
            lambda: store.open_exceptions(problems, run_id="bench-run"),
        )
        timed(
            f"open the same {args.exceptions:,} again (deduplicated)",
            lambda: store.open_exceptions(problems, run_id="bench-run-2"),
        )
        for view, sql in [
            (
                "v_month_end_reconciliation (one month)",
                "SELECT * FROM v_month_end_reconciliation WHERE month = '2025-03'",
            ),
            ("v_order_postings (all)", "SELECT * FROM v_order_postings"),
            ("v_open_exceptions (all)", "SELECT * FROM v_open_exceptions"),
        ]:
            frame = timed(f"query {view}", lambda sql=sql: store.query(sql))
            print(f"{'':<4}-> {len(frame):,} rows")

        slugs = np.array(["trade-gbp", "retail-gbp", "acc0-gbp"])
        prices = pd.DataFrame(
            {
                "slug": np.repeat(slugs, args.skus),
                "sku": np.tile("SKU-" + pd.Series(np.arange(args.skus)).astype(str), 3),
                "min_quantity": 1,
                "price": rng.uniform(1, 100, 3 * args.skus).round(2),
                "currency": "GBP",
                "pushed_at": datetime(2025, 3, 1, tzinfo=UTC),
            }
        )
        timed(f"record a push of {len(prices):,} prices", lambda: store.record_prices(prices))
        changed = prices.sample(frac=0.1, random_state=1).assign(
            price=lambda f: f["price"] + 1, pushed_at=datetime(2025, 3, 10, tzinfo=UTC)
        )
        timed(
            f"record a second push ({len(changed):,} changed prices)",
            lambda: store.record_prices(changed),
        )
        store.record_customer_lists(
            pd.DataFrame(
                {
                    "account_code": ["ACC0"],
                    "price_lists": [["acc0-gbp", "trade-gbp"]],
                    "discount_percentage": [5.0],
                    "pushed_at": [datetime(2025, 3, 1, tzinfo=UTC)],
                }
            )
        )
        on = date(2025, 3, 1) + timedelta(days=9)
        timed("price_on(account, sku, date)", lambda: store.price_on("ACC0", "SKU-42", on))
        database = Path(folder) / "audit.duckdb"
        print(f"{'database size':<58} {database.stat().st_size / 1e6:8.1f} MB")


if __name__ == "__main__":
    main()
