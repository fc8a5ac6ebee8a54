"""Audit store speed at merchant scale, each figure beside its floor measured in the same run.

    .venv/bin/python benchmarks/bench_audit.py [--events 1000000] [--repeat 3] [--lines ...]
                                               [--json PATH]

Prints ratios first (goal: a hash-chained, sealed append at most 1.5 times a plain DuckDB bulk
insert of the same frame), absolute times second, and the machine's load average before and
after, since this 2-core machine is shared and a busy neighbour doubles every time.

Floors:
- **append**: the same DataFrame INSERTed in one statement into a table with the same
  definition as ``audit_events``, with seq, event ids, time and JSON detail made in SQL as the
  store makes them, but no chain (hash columns empty), no checkpoint, no anchor.
- **append, hashes given** (to explain the first ratio, not to replace it): the same INSERT with
  the hash columns filled from the chain the append wrote, so what storing 64-character hex
  digests twice a row costs is in the floor and the rest is what the chain itself costs
  (measured after the pairs, from the first trial's chain, best of as many runs).
- **verify**: one DuckDB query recomputing ``sha256(prev_hash || canonical)`` for every row, the
  check an auditor would write by hand (no links, seals, ledger or anchors).

Targets (issue 11): 1M events appended in under 3 s, verify of 1.1M in under 3 s.

Also measured, for the record of a decision (``checkpoints.py``): an HMAC per event, the
design not taken, against one HMAC per write transaction.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import duckdb
import numpy as np
import pandas as pd

from b2b_pipeline.connectors.audit.anchors import FileAnchorSink
from b2b_pipeline.connectors.audit.hashing import CANONICAL_CONTENT_SQL
from b2b_pipeline.connectors.audit.keys import AuditKey
from b2b_pipeline.connectors.audit.schema import TABLES_SQL, as_json_sql
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


@dataclass
class Timing:
    label: str
    wall: float
    cpu: float


absolute: list[Timing] = []


def timed(label: str, step: Callable[[], T], *, record: bool = True) -> tuple[T, Timing]:
    """Run ``step``: wall-clock seconds and the CPU seconds of this process (all DuckDB
    threads), which tell a slow step from a busy machine."""
    started, cpu_started = time.perf_counter(), time.process_time()
    result = step()
    timing = Timing(label, time.perf_counter() - started, time.process_time() - cpu_started)
    if record:
        absolute.append(timing)
    return result, timing


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


def plain_insert(path: Path, events: pd.DataFrame, hashes: pd.DataFrame | None = None) -> None:
    """The floor of an append: one INSERT of the same frame, same table, no chain; with
    ``hashes`` (``prev_hash``, ``hash`` in seq order), those written in the hash columns."""
    frame = events.assign(position=np.arange(len(events)))
    if hashes is None:
        frame = frame.assign(prev_hash="", hash="")
    else:
        frame = frame.assign(prev_hash=hashes["prev_hash"].array, hash=hashes["hash"].array)
    connection = duckdb.connect(str(path))
    try:
        connection.execute(TABLES_SQL)
        connection.register("frame", frame)
        connection.begin()
        connection.execute(
            f"""
            INSERT INTO audit_events
            SELECT position + 1, uuid()::VARCHAR, $now, run_id::VARCHAR, entity::VARCHAR,
                   entity_key::VARCHAR, action::VARCHAR, category::VARCHAR,
                   {as_json_sql("coalesce(detail::VARCHAR, '{}')")}, prev_hash, hash
            FROM frame
            """,
            {"now": datetime.now(UTC)},
        )
        connection.commit()
    finally:
        connection.close()


def plain_hash_pass(path: Path) -> int:
    """The floor of a verify: one SQL pass recomputing every row's SHA-256."""
    with duckdb.connect(str(path), read_only=True) as connection:
        connection.execute("SET TimeZone = 'UTC'")
        return connection.execute(
            f"SELECT count(*) FROM audit_events "
            f"WHERE hash IS DISTINCT FROM sha256(prev_hash || {CANONICAL_CONTENT_SQL})"
        ).fetchall()[0][0]


def hmac_per_row(hashes: list[str], key: bytes) -> int:
    new = hmac.new
    sha256 = hashlib.sha256
    return len([new(key, h.encode(), sha256).hexdigest() for h in hashes])


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="append/floor pairs to run")
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--exceptions", type=int, default=10_000)
    parser.add_argument("--skus", type=int, default=100_000)
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    load_before = load()

    with tempfile.TemporaryDirectory() as folder_name:
        folder = Path(folder_name)
        key = AuditKey(secrets.token_hex(32).encode(), "benchmark")
        anchors = [FileAnchorSink(folder / "audit.anchors")]
        events = order_events(args.events)

        # Pairs, alternating, so that a neighbour's burst hits both sides alike.
        appends, floors = [], []
        store = None
        for trial in range(args.repeat):
            _, floor = timed(
                "plain insert",
                lambda t=trial: plain_insert(folder / f"plain{t}.db", events),
                record=False,
            )
            trial_store = AuditStore(folder / f"audit{trial}.duckdb", key=key, anchors=anchors)
            trial_store.ensure_schema()
            _, append = timed("append", lambda s=trial_store: s.append_events(events), record=False)
            floors.append(floor)
            appends.append(append)
            print(
                f"  trial {trial + 1}: append {append.wall:.3f} s, plain insert "
                f"{floor.wall:.3f} s ({append.wall / floor.wall:.2f}x), load {load()}"
            )
            if store is None:
                store = trial_store
            else:
                trial_store.path.unlink()
        assert store is not None
        chain = store.query(
            f"SELECT prev_hash, hash FROM audit_events ORDER BY seq LIMIT {args.events}"
        )
        given = [
            timed(
                "plain insert, hashes given",
                lambda t=trial: plain_insert(folder / f"given{t}.db", events, chain),
                record=False,
            )[1]
            for trial in range(args.repeat)
        ]
        best_given = min(given, key=lambda t: t.wall)
        absolute.append(min(appends, key=lambda t: t.wall))
        absolute[-1].label = f"append {args.events:,} events (one batch, best of {args.repeat})"
        absolute.append(min(floors, key=lambda t: t.wall))
        absolute[-1].label = f"plain DuckDB insert of the same frame (best of {args.repeat})"

        timed(
            f"append 100 batches of 1,000 events onto {args.events:,}",
            lambda: [store.append_events(events.head(1000)) for _ in range(100)],
        )
        total = args.events + 100_000
        result, verify = timed(f"verify {total:,} events (every check)", store.verify)
        assert result.ok, result.problems
        _, floor_verify = timed(
            f"plain SQL pass recomputing {total:,} hashes", lambda: plain_hash_pass(store.path)
        )
        hashes = store.query(f"SELECT hash FROM audit_events LIMIT {args.events}")["hash"].tolist()
        _, per_row_hmac = timed(
            f"HMAC of each of {len(hashes):,} event hashes (design not taken)",
            lambda: hmac_per_row(hashes, key.secret),
        )

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
            f"record {len(postings):,} order postings (each sealed)",
            lambda: store.record_order_postings(postings, run_id="bench-run"),
        )
        timed(
            "record 100 postings again onto them",
            lambda: store.record_order_postings(postings.head(100), run_id="bench-run-2"),
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
        full, _ = timed(
            f"verify everything ({len(store.events()):,} events, {len(postings):,} postings)",
            store.verify,
        )
        assert full.ok, full.problems
        for view, sql in [
            (
                "v_month_end_reconciliation (one month)",
                "SELECT * FROM v_month_end_reconciliation WHERE month = '2025-03'",
            ),
            ("v_order_postings (all)", "SELECT * FROM v_order_postings"),
            ("v_open_exceptions (all)", "SELECT * FROM v_open_exceptions"),
        ]:
            frame, timing = timed(f"query {view}", lambda sql=sql: store.query(sql))
            timing.label += f" -> {len(frame):,} rows"

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
        size = store.path.stat().st_size / 1e6

    best_append = min(appends, key=lambda t: t.wall)
    best_floor = min(floors, key=lambda t: t.wall)
    median_ratio = statistics.median(a.wall / f.wall for a, f in zip(appends, floors, strict=True))
    print()
    print(
        f"Machine: {os.cpu_count()} cores; load average (1, 5, 15 min) {load_before} before, "
        f"{load()} after"
    )
    print()
    print("Ratios (measured in this run; goal <= 1.5x)")
    print(
        f"  {'append ' + format(args.events, ',') + ' events / plain insert of the same frame':<66}"
        f" {best_append.wall / best_floor.wall:5.2f}x  (best of {args.repeat}; median pair "
        f"{median_ratio:.2f}x; CPU {best_append.cpu / best_floor.cpu:.2f}x)"
    )
    print(
        f"  {'append / the same insert with the hash columns given':<66}"
        f" {best_append.wall / best_given.wall:5.2f}x  (that insert {best_given.wall:.3f} s, "
        f"{best_given.wall / best_floor.wall:.2f}x the plain one)"
    )
    print(
        f"  {'verify ' + format(total, ',') + ' events / one plain SQL pass over the hashes':<66}"
        f" {verify.wall / floor_verify.wall:5.2f}x"
    )
    print(
        f"  {'append with an HMAC per event (not built) / as built (one per write)':<66}"
        f" {(best_append.wall + per_row_hmac.wall) / best_append.wall:5.2f}x  "
        f"(+{per_row_hmac.wall:.2f} s per {len(hashes):,} events)"
    )
    print()
    print("Absolute (targets: append 1M < 3 s, verify 1.1M < 3 s)")
    for timing in absolute:
        print(f"  {timing.label:<66} {timing.wall:7.3f} s wall {timing.cpu:7.3f} s cpu")
    print(f"  {'database size':<66} {size:7.1f} MB")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "sizes": f"{args.events:,} events (best of {args.repeat} append/insert "
                    f"pairs), {args.lines:,} reconciliation lines, {args.exceptions:,} "
                    "exceptions",
                    "ratios": [
                        {
                            "figure": f"append {args.events:,} events (chained, sealed)",
                            "value": best_append.wall,
                            "floor": best_floor.wall,
                            "floor_name": "plain DuckDB insert of the same frame",
                            "unit": "s",
                            "goal": 1.5,
                            "value_goal": 3.0,
                            "note": f"median pair {median_ratio:.2f}x",
                        },
                        {
                            "figure": "append, against an insert of the finished rows",
                            "value": best_append.wall,
                            "floor": best_given.wall,
                            "floor_name": "the same insert with the hash columns given",
                            "unit": "s",
                            "goal": None,
                            "note": "storing the hashes alone: "
                            f"{best_given.wall / best_floor.wall:.2f}x the plain insert",
                        },
                        {
                            "figure": f"verify {total:,} events (every check)",
                            "value": verify.wall,
                            "floor": floor_verify.wall,
                            "floor_name": "one SQL pass recomputing the hashes",
                            "unit": "s",
                            "goal": None,
                            "value_goal": 3.0,
                        },
                        {
                            "figure": "append with an HMAC per event (design not taken)",
                            "value": best_append.wall + per_row_hmac.wall,
                            "floor": best_append.wall,
                            "floor_name": "append as built (one HMAC per write)",
                            "unit": "s",
                            "goal": None,
                        },
                    ],
                    "absolute": [
                        {
                            "figure": t.label,
                            "value": t.wall,
                            "unit": "s",
                            "goal": 3.0 if t in (best_append, verify) else None,
                        }
                        for t in absolute
                    ]
                    + [{"figure": "database size", "value": size, "unit": "MB"}],
                }
            )
        )


if __name__ == "__main__":
    main()
