"""Dagster resources: the portal, the ERP, the audit store and alerts.

Each is configured from the environment variables of ``config/settings.py`` through ``EnvVar``
(so the Dagster UI shows the variable's name, never its value) and falls back to the embedded
defaults when a variable is unset. Resources only open connections; the business rules live in
``b2b_pipeline.domain``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import PrivateAttr

from b2b_pipeline.config.mappings import Mappings, load_mappings
from b2b_pipeline.config.settings import Settings

if TYPE_CHECKING:
    from b2b_pipeline.connectors.alerts import AlertNotifier
    from b2b_pipeline.connectors.audit.store import AuditStore
    from b2b_pipeline.connectors.erp.gateway import ErpGateway
    from b2b_pipeline.connectors.sparklayer.client import SparkLayerClient
    from b2b_pipeline.connectors.sparklayer.transport import ClientStats
    from b2b_pipeline.connectors.sync_state import SyncState


class _PortalCalls:
    """What every SparkLayer client the resource opened in this process spent its time on
    (calls, retries, waits on the rate limit), added up.

    The resource opens a client when a run (or a sensor tick) starts and closes it when it
    ends; a closed client's figures are folded into the process total, open ones are summed on
    reading. Read by the benchmarks (share of a run spent waiting on the portal's rate limit)
    and for capacity questions: "is the portal's allowance what slows order intake down?".
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Keyed by ClientStats field: ints for the counters, floats for the waits.
        self._closed: dict[str, Any] = {}
        self._open: set[SparkLayerClient] = set()

    def opened(self, client: SparkLayerClient) -> None:
        with self._lock:
            self._open.add(client)

    def closed(self, client: SparkLayerClient) -> None:
        with self._lock:
            if client in self._open:
                self._open.discard(client)
                self._add(self._closed, client.stats)

    @staticmethod
    def _add(totals: dict[str, Any], stats: ClientStats) -> None:
        for name in stats.__dataclass_fields__:
            totals[name] = totals.get(name, 0) + getattr(stats, name)

    def snapshot(self) -> ClientStats:
        from b2b_pipeline.connectors.sparklayer.transport import ClientStats

        with self._lock:
            totals = dict(self._closed)
            for client in self._open:
                self._add(totals, client.stats)
        return ClientStats(**totals)

    def reset(self) -> None:
        with self._lock:
            self._closed = {}
            for client in self._open:
                client.reset_stats()


_PORTAL_CALLS = _PortalCalls()


def portal_call_stats() -> ClientStats:
    """``ClientStats`` summed over every portal client the resource opened in this process
    (``rate_limit_wait_seconds``: time spent waiting on the rate limit, ours and the portal's)."""
    return _PORTAL_CALLS.snapshot()


def reset_portal_call_stats() -> None:
    _PORTAL_CALLS.reset()


class SparkLayerResource(dg.ConfigurableResource):
    """The SparkLayer API (the embedded simulator when SPARKLAYER_BASE_URL is unset).

    One client per run (or sensor tick), opened when it starts and closed when it ends, so
    its connection pool and rate limiter serve every call of the run. Assets use ``.client``.
    """

    base_url: str
    site_id: str
    client_id: str
    client_secret: str
    requests_per_second: float = 20.0
    _client: SparkLayerClient | None = PrivateAttr(default=None)

    def _open(self) -> SparkLayerClient:
        from b2b_pipeline.connectors.sparklayer.client import SparkLayerClient

        client = SparkLayerClient(
            self.base_url,
            self.site_id,
            self.client_id,
            self.client_secret,
            requests_per_second=self.requests_per_second,
        )
        _PORTAL_CALLS.opened(client)
        return client

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._client = self._open()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            _PORTAL_CALLS.closed(self._client)
            self._client.close()
            self._client = None

    @property
    def client(self) -> SparkLayerClient:
        if self._client is None:  # used outside a run (a script, a test): opened on first use
            self._client = self._open()
        return self._client

    def get_client(self) -> SparkLayerClient:
        """A client of its own, for code that closes it (``with resource.get_client()``)."""
        return self._open()


class ErpResource(dg.ConfigurableResource):
    """The ERP database (any SQLAlchemy URL; the SQLite reference ERP by default)."""

    database_url: str
    _gateway: ErpGateway | None = PrivateAttr(default=None)

    @property
    def gateway(self) -> ErpGateway:
        from b2b_pipeline.connectors.erp.gateway import ErpGateway

        if self._gateway is None:
            self._gateway = ErpGateway(self.database_url)
        return self._gateway

    def get_gateway(self) -> ErpGateway:
        return self.gateway

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._gateway is not None:
            self._gateway.dispose()
            self._gateway = None


class AuditResource(dg.ConfigurableResource):
    """The DuckDB audit trail, exception queue and sync state (``B2B_AUDIT_DB``).

    Opening it costs nothing: the store opens a short connection per operation, and the
    schema is created once per file and release (``connectors/audit/setup.py``), so a reader
    never takes the writer's lock to start.
    """

    path: str

    @property
    def store(self) -> AuditStore:
        from b2b_pipeline.connectors.audit.store import AuditStore

        return AuditStore(Path(self.path))

    @property
    def state(self) -> SyncState:
        from b2b_pipeline.connectors.sync_state import SyncState

        return SyncState(Path(self.path))

    def get_store(self) -> AuditStore:
        return self.store


class AlertsResource(dg.ConfigurableResource):
    """Where exception digests go: the log always, a Slack-compatible webhook when set."""

    webhook_url: str | None = None

    @property
    def notifier(self) -> AlertNotifier:
        from b2b_pipeline.connectors.alerts import AlertNotifier

        return AlertNotifier(self.webhook_url)

    def get_notifier(self) -> AlertNotifier:
        return self.notifier


class MappingsResource(dg.ConfigurableResource):
    """The business mapping file (``B2B_MAPPINGS``; the shipped default when unset), read once
    per run."""

    path: str | None = None
    _mappings: Mappings | None = PrivateAttr(default=None)

    @property
    def mappings(self) -> Mappings:
        if self._mappings is None:
            self._mappings = load_mappings(self.path)
        return self._mappings

    def load(self) -> Mappings:
        return self.mappings


def _env_or_default(name: str, default: str) -> str | dg.EnvVar:
    import os

    # EnvVar keeps the value out of the UI; the default applies when the variable is unset.
    return dg.EnvVar(name) if os.environ.get(name) else default


def build_resources(settings: Settings | None = None) -> dict[str, dg.ConfigurableResource]:
    """The resources for one environment, from the environment variables.

    Every asset, check and sensor declares the ones it uses (``sparklayer``, ``erp``,
    ``audit``, ``alerts``, ``mappings``); each is opened for a run and closed after it.
    """
    settings = settings or Settings.from_env()
    systems = {
        "sparklayer": SparkLayerResource(
            base_url=_env_or_default("SPARKLAYER_BASE_URL", settings.sparklayer_base_url),
            site_id=_env_or_default("SPARKLAYER_SITE_ID", settings.sparklayer_site_id),
            client_id=_env_or_default("SPARKLAYER_CLIENT_ID", settings.sparklayer_client_id),
            client_secret=_env_or_default(
                "SPARKLAYER_CLIENT_SECRET", settings.sparklayer_client_secret
            ),
            requests_per_second=settings.sparklayer_requests_per_second,
        ),
        "erp": ErpResource(
            database_url=_env_or_default("ERP_DATABASE_URL", settings.erp_database_url)
        ),
        "audit": AuditResource(path=str(settings.audit_db)),
        "alerts": AlertsResource(
            webhook_url=dg.EnvVar("B2B_ALERT_WEBHOOK_URL") if settings.alert_webhook_url else None
        ),
        "mappings": MappingsResource(
            path=str(settings.mappings_path) if settings.mappings_path else None
        ),
    }
    return systems


@dg.definitions
def resources() -> dg.Definitions:
    """The systems every asset, check and sensor of ``defs/`` is bound to (loaded by
    ``dg.load_from_defs_folder`` with the rest of the folder)."""
    return dg.Definitions(resources=build_resources())
