"""Operations console speed at merchant scale (issue 12): the exception queue with 100,000
exceptions over 1M audit events, and the month page of a month of 1M orders.

    .venv/bin/python benchmarks/bench_console.py [--exceptions 100000] [--events 1000000]
                                                 [--orders 1000000] [--repeat 5]
                                                 [--json PATH]

The console runs as ``b2b-pipeline console`` runs it (uvicorn on loopback) on an audit file
filled through the store's own bulk writes, and a signed-in ``requests`` session asks for each
page as a browser would. Each figure is the median of ``--repeat`` requests, beside its floor
measured in the same run on the same file: the DuckDB query an engineer would write by hand for
the same rows (no HTML, no HTTP). Ratios first, absolute times second, the machine's load noted.

Goals: the queue's first screen and a filter under 300 ms; the month page under 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import requests
import uvicorn

MONTH = "2026-10"
PASSWORD = "bench-password-1"
REASONS = [  # (reason_code, the message's start), spread as a merchant's queue is
    ("PRICE_MISMATCH", "Portal total differs from the ERP's price for the account"),
    ("UNMAPPED_ACCOUNT", "The portal company has no ERP account"),
    ("ACCOUNT_ON_HOLD", "The account is on credit hold in the ERP"),
    ("UNKNOWN_SKU", "A line names a SKU the ERP does not know"),
]


def median_ms(action: Callable[[], object], repeat: int) -> float:
    action()  # warm: the first request of a page pays for template compilation
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def fill(store, exceptions: int, events: int, orders: int) -> None:
    """The audit file through the store's own writes: events, exceptions, a month's lines."""
    from b2b_pipeline.domain.exceptions import exception_frame

    rng = np.random.default_rng(11)
    run = "bench-run"
    chunk = 250_000
    for start in range(0, events, chunk):
        n = min(chunk, events - start)
        store.append_events(
            pd.DataFrame(
                {
                    "run_id": run,
                    "entity": "order",
                    "entity_key": [f"order-{i}" for i in range(start, start + n)],
                    "action": "posted",
                    "category": None,
                    "detail": '{"erp_order_no": 1}',
                }
            )
        )
    picks = rng.integers(0, len(REASONS), exceptions)
    rows = pd.DataFrame(
        {
            "entity": "order",
            "entity_key": [f"held-{i}" for i in range(exceptions)],
            "account_code": [f"CUST{i % 5000:04d}" for i in range(exceptions)],
            "reason_code": [REASONS[p][0] for p in picks],
            "message": [
                f"{REASONS[p][1]} (order SL-{100000 + i}): see the runbook, section 4."
                for i, p in enumerate(picks)
            ],
            "payload": [
                f'{{"id": "held-{i}", "visible_id": "SL-{100000 + i}"}}' for i in range(exceptions)
            ],
        }
    )
    for start in range(0, exceptions, chunk):
        store.open_exceptions(exception_frame(rows.iloc[start : start + chunk]), run)
    outcome = np.where(rng.random(orders) < 0.995, "MATCHED", "AMOUNT_MISMATCH")
    portal = rng.uniform(10, 5000, orders).round(2)
    erp = np.where(outcome == "MATCHED", portal, (portal + 1.0).round(2))
    lines = pd.DataFrame(
        {
            "portal_order_id": [f"order-{i}" for i in range(orders)],
            "order_number": [f"SL-{i}" for i in range(orders)],
            "erp_order_no": np.arange(1, orders + 1),
            "account_code": [f"CUST{i % 5000:04d}" for i in range(orders)],
            "currency": "GBP",
            "portal_gross": portal,
            "erp_gross": erp,
            "difference": (erp - portal).round(4),
            "outcome": outcome,
            "reason": np.where(
                outcome == "MATCHED",
                "Same account, status and total in both systems.",
                "The ERP total differs from the portal's: find who changed the order.",
            ),
        }
    )
    store.write_reconciliation_lines(MONTH, lines, run)


def serve(app) -> tuple[str, uvicorn.Server, threading.Thread]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the console did not start")
        time.sleep(0.05)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server, thread


def sign_in(url: str) -> requests.Session:
    session = requests.Session()
    form = session.get(f"{url}/login", timeout=30)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token, form.text[:300]
    signed = session.post(
        f"{url}/login",
        data={"username": "bench", "password": PASSWORD, "csrf_token": token.group(1)},
        allow_redirects=False,
        timeout=30,
    )
    assert signed.status_code == 303, signed.text[:300]
    return session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exceptions", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench_console_"))
    data = folder / "data"
    data.mkdir()
    os.environ.update(
        {
            "B2B_DATA_DIR": str(data),
            "B2B_AUDIT_DB": str(data / "audit.duckdb"),
            "ERP_DATABASE_URL": f"sqlite:///{data / 'erp.sqlite'}",
            "SPARKLAYER_BASE_URL": "http://127.0.0.1:9",  # the pages read only the audit trail
            "SPARKLAYER_SITE_ID": "bench",
            "SPARKLAYER_CLIENT_ID": "bench",
            "SPARKLAYER_CLIENT_SECRET": "bench-secret",
        }
    )
    for name in ("B2B_MAPPINGS", "B2B_CONSOLE_USERS", "DAGSTER_HOME"):
        os.environ.pop(name, None)

    from b2b_pipeline.config.settings import Settings
    from b2b_pipeline.connectors.audit.store import AuditStore
    from b2b_pipeline.console.app import create_app
    from b2b_pipeline.console.auth import add_user
    from b2b_pipeline.console.config import users_path

    settings = Settings.from_env()
    store = AuditStore(settings.audit_db)
    started = time.perf_counter()
    fill(store, args.exceptions, args.events, args.orders)
    fill_s = time.perf_counter() - started
    add_user(users_path(settings), "bench", "finance", PASSWORD)
    load_before = os.getloadavg()

    url, server, thread = serve(create_app(settings=settings))
    try:
        session = sign_in(url)

        def page(path: str, must: str) -> Callable[[], object]:
            def get() -> object:
                response = session.get(f"{url}{path}", timeout=120)
                response.raise_for_status()
                assert must in response.text, (path, response.text[:300])
                return response

            return get

        pages = {
            "queue, first screen": page("/exceptions", "SL-1"),
            "queue, filtered (pricing, one account)": page(
                "/exceptions?category=pricing&account=CUST0042", "CUST0042"
            ),
            "month page": page(f"/month-end?month={MONTH}", MONTH),
        }
        ui = {name: median_ms(get, args.repeat) for name, get in pages.items()}
    finally:
        server.should_exit = True
        thread.join(timeout=10)

    # Floors: the rows each page shows, asked of the same file by hand (read-only).
    with duckdb.connect(str(settings.audit_db), read_only=True) as con:
        floors_sql = {
            "queue, first screen": """
                SELECT exception_id, entity_key, account_code, category, reason_code, message,
                       opened_at FROM exceptions WHERE status = 'open'
                ORDER BY opened_at, exception_id LIMIT 50""",
            "queue, filtered (pricing, one account)": """
                SELECT exception_id, entity_key, account_code, category, reason_code, message,
                       opened_at FROM exceptions
                WHERE status = 'open' AND category = 'PRICING' AND account_code = 'CUST0042'
                ORDER BY opened_at, exception_id LIMIT 50""",
            "month page": f"""
                SELECT outcome, count(*), sum(portal_gross), sum(erp_gross)
                FROM reconciliation_lines WHERE month = '{MONTH}' GROUP BY outcome""",
        }
        floor = {
            name: median_ms(lambda sql=sql: con.execute(sql).fetchall(), args.repeat)
            for name, sql in floors_sql.items()
        }
    goals = {
        "queue, first screen": 300,
        "queue, filtered (pricing, one account)": 300,
        "month page": 1000,
    }
    load_after = os.getloadavg()
    print(
        f"console pages: {args.exceptions:,} exceptions, {args.events:,} audit events, a month "
        f"of {args.orders:,} orders (filled in {fill_s:.1f} s); median of {args.repeat}; "
        f"load {load_before[0]:.2f} -> {load_after[0]:.2f}"
    )
    print(f"{'page':<40} {'page / floor':>12} {'page':>9} {'floor':>9} {'goal':>8}")
    for name in pages:
        verdict = "met" if ui[name] < goals[name] else "NOT met"
        print(
            f"{name:<40} {ui[name] / floor[name]:>11.1f}x {ui[name]:>7.0f}ms {floor[name]:>7.1f}ms"
            f" {goals[name]:>6}ms {verdict}"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "sizes": f"{args.exceptions:,} exceptions, {args.events:,} audit events, "
                    f"a month of {args.orders:,} orders; median of {args.repeat}",
                    "ratios": [
                        {
                            "figure": f"page: {name}",
                            "value": ui[name],
                            "floor": floor[name],
                            "floor_name": "the same rows by hand in DuckDB (no HTML, no HTTP)",
                            "unit": "ms",
                            "goal": None,
                            "value_goal": goals[name],
                        }
                        for name in pages
                    ],
                    "absolute": [
                        {"figure": name, "value": ui[name], "unit": "ms", "goal": goals[name]}
                        for name in pages
                    ]
                    + [{"figure": "filling the audit file", "value": fill_s, "unit": "s"}],
                }
            )
        )


if __name__ == "__main__":
    main()
