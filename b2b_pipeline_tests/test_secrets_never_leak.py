"""The portal's client secret, the tokens it issued and the ERP password appear nowhere.

One realistic day on real components: a simulator that only accepts a distinctive client
secret (and issues short-lived tokens, so several are issued), a PostgreSQL ERP reached with a
distinctive password in its URL (the server trusts loopback, so any password is accepted: what
is under test is where our code copies the URL), a DuckDB audit file and a persistent Dagster
instance (``DAGSTER_HOME``), driven by the real ``b2b-pipeline`` executable with ``-v``. The day
has orders that post, orders that are queued, a quote, retried 503s, revoked tokens, a run with
a wrong secret, a run with the ERP unreachable, the exception queue read, the month reconciled
into close packs, the audit trail verified and exported to Parquet.

Then every place a secret could be copied to is scanned for every needle: everything each
command printed; every column of every table of the audit file; the Parquet export; the close
packs; every run, event record and job snapshot in the Dagster instance; every file byte under
the data folder and ``DAGSTER_HOME``; every column of every ERP table.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import requests

from b2b_pipeline_tests.conftest import CLIENT_ID, SITE_ID

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

B2B = str(Path(sys.executable).with_name("b2b-pipeline"))
SECRET = f"portal-secret-{uuid.uuid4().hex}"
ERP_PASSWORD = f"erp-pw-{uuid.uuid4().hex}"
WRONG_SECRET = f"wrong-secret-{uuid.uuid4().hex}"
SYSTEM_VARIABLES = (
    "SPARKLAYER_BASE_URL",
    "SPARKLAYER_SITE_ID",
    "SPARKLAYER_CLIENT_ID",
    "SPARKLAYER_CLIENT_SECRET",
    "ERP_DATABASE_URL",
    "B2B_AUDIT_DB",
    "B2B_MAPPINGS",
    "B2B_ALERT_WEBHOOK_URL",
    "DAGSTER_HOME",
    "B2B_DATA_DIR",
)


def _issued_tokens(server: object) -> set[str]:
    """The bearer tokens the simulator has issued and not yet forgotten.

    Read from the simulator's token store (test-only knowledge of its internals: the tokens
    are the other secret the pipeline holds, and nothing else knows them all).
    """
    store = server._httpd.simulator.portal.tokens  # type: ignore[attr-defined]
    with store._lock:
        return set(store._expiry)


class Day:
    """The systems of the day and everything the commands printed."""

    def __init__(self, tmp_path: Path, simulator: object, erp_url: str) -> None:
        self.data = tmp_path / "data"
        self.data.mkdir()
        self.dagster_home = tmp_path / "dagster_home"
        self.dagster_home.mkdir()
        self.reports = tmp_path / "reports"
        self.export = tmp_path / "export"
        self.simulator = simulator
        self.url = simulator.url  # type: ignore[attr-defined]
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in SYSTEM_VARIABLES},
            "B2B_DATA_DIR": str(self.data),
            "DAGSTER_HOME": str(self.dagster_home),
            "SPARKLAYER_BASE_URL": self.url,
            "SPARKLAYER_SITE_ID": SITE_ID,
            "SPARKLAYER_CLIENT_ID": CLIENT_ID,
            "SPARKLAYER_CLIENT_SECRET": SECRET,
            "SPARKLAYER_REQUESTS_PER_SECOND": "1000",
            "ERP_DATABASE_URL": erp_url,
            "B2B_AUDIT_DB": str(self.data / "audit.duckdb"),
        }
        self.printed: list[tuple[str, str]] = []
        self.tokens: set[str] = set()

    def b2b(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [B2B, "-v", *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=300,
        )
        self.printed.append((" ".join(args), result.stdout + result.stderr))
        self.tokens |= _issued_tokens(self.simulator)
        return result

    def sim(self, method: str, path: str, body: object = None) -> requests.Response:
        response = requests.request(method, f"{self.url}{path}", json=body, timeout=30)
        assert response.ok, response.text
        return response

    def order(self, customer: str, **extra: object) -> None:
        body = {
            "customer": customer,
            "type": "order",
            "payment_method": "on_account",
            "customer_reference": "PO-SCAN",
            "lines": [{"sku": "BRK-0001", "quantity": 2}],
            **extra,
        }
        self.sim("POST", "/_sim/orders", body)


@pytest.fixture
def simulator_with_secret() -> Iterator[object]:
    from b2b_pipeline.simulator.server import SimulatorServer

    # Short-lived tokens: a day of runs is issued several, each of which must stay secret.
    server = SimulatorServer(
        site_id=SITE_ID, client_id=CLIENT_ID, client_secret=SECRET, token_ttl_seconds=2
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _run_the_day(day: Day) -> None:
    month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
    assert day.b2b("erp", "init").returncode == 0
    assert day.b2b("seed").returncode == 0
    assert day.b2b("run").returncode == 0, day.printed[-1]
    day.order("CUST0002")
    day.order("CUST0003")
    day.order("CUST0004", type="quote")
    day.order("CUST0005", lines=[{"sku": "BRK-0001", "quantity": 1, "unit_price": 0.01}])
    # Retried 503s on the purchase list (logged with -v), then every token revoked mid-day.
    day.sim(
        "PUT",
        "/_sim/faults",
        {"fail_next": [{"method": "GET", "endpoint": "/api/v1/purchases", "status": 503}]},
    )
    assert day.b2b("run").returncode in (0, 1), day.printed[-1]
    day.sim("POST", "/_sim/tokens/revoke")
    day.order("CUST0008")
    assert day.b2b("run").returncode in (0, 1), day.printed[-1]
    # Failures whose messages must not carry a secret either.
    assert day.b2b("run", SPARKLAYER_CLIENT_SECRET=WRONG_SECRET).returncode == 2
    unreachable = f"postgresql+psycopg://postgres:{ERP_PASSWORD}@127.0.0.1:1/erp"
    assert day.b2b("run", ERP_DATABASE_URL=unreachable).returncode == 2
    listed = day.b2b("exceptions", "list", "--status", "all", "--format", "json")
    queue = json.loads(listed.stdout)
    assert queue, "the day queues exceptions (a PRICING difference at least)"
    day.b2b("exceptions", "show", str(queue[0]["exception_id"]))
    day.b2b("reconcile", "--month", month, "--format", "json")
    for fmt in ("csv", "html"):
        out = day.reports / f"close-pack.{fmt}"
        day.b2b("reconcile", "--month", month, "--format", fmt, "--out", str(out))
    assert day.b2b("audit", "verify").returncode == 0, day.printed[-1]

    from b2b_pipeline.connectors.audit.store import AuditStore

    AuditStore(day.data / "audit.duckdb").export_parquet(day.export)


def _duckdb_text_hits(connection: duckdb.DuckDBPyConnection, needles: list[str]) -> list[str]:
    """``relation.column`` for every column of every table or view whose text holds a needle."""
    hits = []
    relations = connection.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
    ).fetchall()
    for (relation,) in relations:
        columns = connection.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [relation]
        ).fetchall()
        for (column,) in columns:
            for needle in needles:
                (found,) = connection.execute(
                    f'SELECT count(*) FROM "{relation}" '
                    f'WHERE contains(CAST("{column}" AS VARCHAR), ?)',
                    [needle],
                ).fetchone()
                if found:
                    hits.append(f"{relation}.{column}")
    return hits


def _dagster_records(dagster_home: Path) -> Iterator[tuple[str, str]]:
    """Every run, its job snapshot and every event record of the instance, serialised."""
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = instance.get_runs()
        assert runs, "the CLI runs were recorded in DAGSTER_HOME"
        for run in runs:
            yield f"run {run.run_id}", dg.serialize_value(run)
            snapshot = instance.get_job_snapshot(run.job_snapshot_id)
            yield f"job snapshot of {run.run_id}", dg.serialize_value(snapshot)
            for record in instance.get_records_for_run(run.run_id, limit=1_000_000).records:
                yield f"event of {run.run_id}", dg.serialize_value(record.event_log_entry)


def test_no_secret_in_any_output_record_file_or_table(
    simulator_with_secret, postgres_url: str, tmp_path: Path
) -> None:
    erp_url = postgres_url.replace("://postgres@", f"://postgres:{ERP_PASSWORD}@", 1)
    assert ERP_PASSWORD in erp_url
    day = Day(tmp_path, simulator_with_secret, erp_url)
    _run_the_day(day)
    assert len(day.tokens) >= 3, "the day should have been issued several tokens"
    needles = [SECRET, ERP_PASSWORD, WRONG_SECRET, *sorted(day.tokens)]

    leaks: list[str] = []
    for command, text in day.printed:
        leaks += [f"output of `{command}`" for needle in needles if needle in text]

    with duckdb.connect(str(day.data / "audit.duckdb"), read_only=True) as audit:
        leaks += [f"audit {where}" for where in _duckdb_text_hits(audit, needles)]
    exported = sorted(day.export.glob("*.parquet"))
    assert exported, "the audit trail was exported"
    with duckdb.connect() as reader:
        for path in exported:
            reader.execute(f"CREATE VIEW \"{path.stem}\" AS SELECT * FROM read_parquet('{path}')")
        leaks += [f"parquet {where}" for where in _duckdb_text_hits(reader, needles)]

    packs = sorted(day.reports.glob("*"))
    assert {p.suffix for p in packs} >= {".csv", ".html"}, packs
    for where, text in [(str(p), p.read_text(errors="replace")) for p in packs] + list(
        _dagster_records(day.dagster_home)
    ):
        leaks += [where for needle in needles if needle in text]

    for folder in (day.data, day.dagster_home, day.reports):
        for path in folder.rglob("*"):
            if path.is_file():
                content = path.read_bytes()
                leaks += [f"file {path}" for n in needles if n.encode() in content]

    from b2b_pipeline.connectors.erp.gateway import ErpGateway
    from b2b_pipeline.connectors.erp.schema import TABLES

    erp = ErpGateway(erp_url)
    try:
        for name in TABLES:
            text = erp.read_table(name).astype(str).to_csv()
            leaks += [f"ERP table {name}" for needle in needles if needle in text]
    finally:
        erp.dispose()

    assert not leaks, sorted(set(leaks))
