"""Shared fixtures: real systems, started for the test and thrown away after it.

- ``simulator``: the embedded SparkLayer simulator, a real HTTP server on a free loopback port.
- ``portal``: a SparkLayerClient speaking to that simulator over HTTP.
- ``erp``: a reference ERP on a fresh SQLite file; ``erp_postgres``: the same on a fresh
  PostgreSQL database at 127.0.0.1:5432 (marker ``postgres``).
- ``audit``: an AuditStore on a fresh DuckDB file.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

SITE_ID = "test-site"
CLIENT_ID = "test-client"
CLIENT_SECRET = "s3cr3t-test-value-never-logged"
POSTGRES_ADMIN_URL = os.environ.get(
    "B2B_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test writes to the developer's ./data or reads their environment's systems."""
    monkeypatch.setenv("B2B_DATA_DIR", str(tmp_path / "data"))
    for name in (
        "SPARKLAYER_BASE_URL",
        "SPARKLAYER_SITE_ID",
        "SPARKLAYER_CLIENT_ID",
        "SPARKLAYER_CLIENT_SECRET",
        "ERP_DATABASE_URL",
        "B2B_AUDIT_DB",
        "B2B_ALERT_WEBHOOK_URL",
        "B2B_MAPPINGS",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[object]:
    from b2b_pipeline.simulator.server import SimulatorServer

    server = SimulatorServer(
        "127.0.0.1",
        0,
        site_id=SITE_ID,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        state_path=None,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sim_calls(simulator: object):
    """A function returning the simulator's call counts since reset (``GET /_sim/calls``)."""

    def calls() -> dict:
        return requests.get(f"{simulator.url}/_sim/calls", timeout=10).json()

    return calls


@pytest.fixture
def portal(simulator: object):
    from b2b_pipeline.connectors.sparklayer.client import SparkLayerClient

    client = SparkLayerClient(
        simulator.url,
        SITE_ID,
        CLIENT_ID,
        CLIENT_SECRET,
        requests_per_second=1000.0,
        backoff_max=0.2,
    )
    yield client
    client.close()


@pytest.fixture
def erp(tmp_path: Path):
    from b2b_pipeline.connectors.erp.reference_edits import ReferenceErp

    gateway = ReferenceErp(f"sqlite:///{tmp_path / 'erp.sqlite'}")
    gateway.create_schema()
    yield gateway
    gateway.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import sqlalchemy as sa

    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"b2b_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # the server is part of this machine kind: fail, never skip
        pytest.fail(f"PostgreSQL at {POSTGRES_ADMIN_URL} is not reachable: {exc}")
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def erp_postgres(postgres_url: str):
    from b2b_pipeline.connectors.erp.reference_edits import ReferenceErp

    gateway = ReferenceErp(postgres_url)
    gateway.create_schema()
    yield gateway
    gateway.dispose()


@pytest.fixture
def audit(tmp_path: Path):
    from b2b_pipeline.connectors.audit.store import AuditStore

    store = AuditStore(tmp_path / "audit.duckdb")
    store.ensure_schema()
    return store


@pytest.fixture
def pipeline(simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The whole product on real components: simulator, seeded SQLite ERP, DuckDB audit file;
    the environment points the project's own Dagster definitions at them."""
    from b2b_pipeline.connectors.audit.store import AuditStore
    from b2b_pipeline.connectors.erp.reference_edits import ReferenceErp
    from b2b_pipeline.connectors.sparklayer.client import SparkLayerClient
    from b2b_pipeline.demo import seed_erp
    from b2b_pipeline_tests.harness import Pipeline

    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    erp_url = f"sqlite:///{data / 'erp.sqlite'}"
    audit_path = data / "audit.duckdb"
    monkeypatch.setenv("SPARKLAYER_BASE_URL", simulator.url)
    monkeypatch.setenv("SPARKLAYER_SITE_ID", SITE_ID)
    monkeypatch.setenv("SPARKLAYER_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("SPARKLAYER_CLIENT_SECRET", CLIENT_SECRET)
    # Fast pacing in tests; the rate limit itself is proven in the client tests.
    monkeypatch.setenv("SPARKLAYER_REQUESTS_PER_SECOND", "1000")
    monkeypatch.setenv("ERP_DATABASE_URL", erp_url)
    monkeypatch.setenv("B2B_AUDIT_DB", str(audit_path))
    gateway = ReferenceErp(erp_url)
    gateway.create_schema()
    seed_erp(gateway)
    store = AuditStore(audit_path)
    store.ensure_schema()
    client = SparkLayerClient(
        simulator.url,
        SITE_ID,
        CLIENT_ID,
        CLIENT_SECRET,
        requests_per_second=1000.0,
        backoff_max=0.2,
    )
    yield Pipeline(url=simulator.url, erp=gateway, audit=store, portal=client, data_dir=data)
    client.close()
    gateway.dispose()
