"""Benchmark: seed the reference ERP at benchmark size and read the price list back.

    .venv/bin/python benchmarks/bench_seed.py                       # SQLite in a temp folder
    .venv/bin/python benchmarks/bench_seed.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test

The default size is 5,000 customers, 20,000 SKUs and 1,000,000 price rows. With
``--postgres ADMIN_URL`` it also runs on a temporary PostgreSQL database created through that
URL and dropped afterwards. Prints seconds and rows per step; the second seed shows the cost of
re-seeding (clear and refill) and that it yields the same row counts.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from b2b_pipeline.connectors.erp.gateway import ErpGateway
from b2b_pipeline.demo import demo_erp_frames, seed_erp


@contextmanager
def _timed(label: str, rows: int | None = None) -> Iterator[None]:
    start = time.perf_counter()
    yield
    seconds = time.perf_counter() - start
    rate = f"  ({rows / seconds:,.0f} rows/s)" if rows else ""
    count = f"{rows:>10,} rows" if rows is not None else " " * 15
    print(f"  {label:<34}{seconds:>8.2f} s  {count}{rate}")


def _bench(url: str, args: argparse.Namespace) -> None:
    gateway = ErpGateway(url)
    print(f"{gateway.dialect}: {gateway.display_url}")
    sizes = {"customers": args.customers, "skus": args.skus, "price_rows": args.price_rows}
    try:
        with _timed("build frames (numpy/pandas)"):
            frames = demo_erp_frames(**sizes)
        total = sum(len(f) for f in frames.values())
        with _timed("seed (create + bulk load)", total):
            summary = seed_erp(gateway, **sizes)
        with _timed("re-seed (clear + bulk load)", total):
            again = seed_erp(gateway, **sizes)
        assert again == summary, "re-seeding changed the row counts"
        with _timed("read_price_list_items", summary.price_list_items):
            items = gateway.read_price_list_items()
        assert len(items) == summary.price_list_items
        with _timed("read_customers", summary.customers):
            gateway.read_customers()
        print(
            f"  rows: {summary.total_rows:,} in total; {summary.customers:,} customers, "
            f"{summary.products:,} SKUs, {summary.price_lists:,} price lists "
            f"({summary.customer_price_lists:,} customer-specific), "
            f"{summary.price_list_items:,} price rows, {summary.inventory:,} stock rows"
        )
    finally:
        gateway.dispose()


@contextmanager
def _temporary_postgres(admin_url: str) -> Iterator[str]:
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"b2b_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--skus", type=int, default=20_000)
    parser.add_argument("--price-rows", type=int, default=1_000_000)
    parser.add_argument("--postgres", metavar="ADMIN_URL", help="also run on PostgreSQL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        _bench(f"sqlite:///{Path(folder) / 'erp.sqlite'}", args)
    if args.postgres:
        with _temporary_postgres(args.postgres) as url:
            _bench(url, args)


if __name__ == "__main__":
    main()
