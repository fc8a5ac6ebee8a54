"""Dagster resources: the portal, the ERP, the audit store and alerts.

Each is configured from the environment variables of ``config/settings.py`` through ``EnvVar``
(so the Dagster UI shows the variable's name, never its value) and falls back to the embedded
defaults when a variable is unset. Resources only open connections; the business rules live in
``b2b_pipeline.domain``.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import weakref
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from b2b_pipeline.config.mappings import Mappings, load_mappings
from b2b_pipeline.config.settings import Settings


class _PortalCallStats:
    """What every SparkLayer client handed out by the resource in this process spent its time
    on (calls, retries, waits on the rate limit), added up.

    Assets open a client per step and let it go when the step ends, so a client's own
    ``stats`` is gone before anyone can read it. Each client's figures are folded into the
    process total when it is closed or collected; live clients are summed on reading. Read by
    the benchmarks (share of a run spent waiting on the portal's rate limit) and for capacity
    questions: "is the portal's allowance what slows order intake down?".
    """

    def __init__(self) -> None:
        # Re-entrant: a collection triggered while the lock is held may run a client's __del__.
        self._lock = threading.RLock()
        self._retired: dict[str, float] = {}
        self._live: weakref.WeakSet = weakref.WeakSet()

    def track(self, client) -> None:
        with self._lock:
            client._counted_out = False
            self._live.add(client)

    def retire(self, client) -> None:
        # A flag on the client, not membership of the weak set: when the garbage collector
        # breaks a cycle it clears weak references before it calls __del__.
        with self._lock:
            if getattr(client, "_counted_out", True):
                return
            client._counted_out = True
            self._live.discard(client)
            self._add(self._retired, client.stats)

    @staticmethod
    def _add(totals: dict[str, float], stats) -> None:
        for name in stats.__dataclass_fields__:
            totals[name] = totals.get(name, 0) + getattr(stats, name)

    def snapshot(self):
        from b2b_pipeline.connectors.sparklayer.transport import ClientStats

        with self._lock:
            totals = dict(self._retired)
            for client in list(self._live):
                self._add(totals, client.stats)
        return ClientStats(**totals)

    def reset(self) -> None:
        with self._lock:
            self._retired = {}
            for client in list(self._live):
                client.reset_stats()


_PORTAL_CALLS = _PortalCallStats()


def portal_call_stats():
    """``ClientStats`` summed over every portal client the resource made in this process
    (``rate_limit_wait_seconds``: time spent waiting on the rate limit, ours and the portal's)."""
    return _PORTAL_CALLS.snapshot()


def reset_portal_call_stats() -> None:
    _PORTAL_CALLS.reset()


@functools.cache
def _counted_client_class():
    from b2b_pipeline.connectors.sparklayer.client import SparkLayerClient

    class CountedSparkLayerClient(SparkLayerClient):
        """A SparkLayerClient whose figures survive it (see ``portal_call_stats``)."""

        def close(self) -> None:
            _PORTAL_CALLS.retire(self)
            super().close()

        def __del__(self) -> None:
            with contextlib.suppress(Exception):  # never raise from a finaliser
                _PORTAL_CALLS.retire(self)

    return CountedSparkLayerClient


class SparkLayerResource(dg.ConfigurableResource):
    """The SparkLayer API (the embedded simulator when SPARKLAYER_BASE_URL is unset)."""

    base_url: str
    site_id: str
    client_id: str
    client_secret: str
    requests_per_second: float = 20.0

    def get_client(self):
        client = _counted_client_class()(
            self.base_url,
            self.site_id,
            self.client_id,
            self.client_secret,
            requests_per_second=self.requests_per_second,
        )
        _PORTAL_CALLS.track(client)
        return client


class ErpResource(dg.ConfigurableResource):
    """The ERP database (any SQLAlchemy URL; the SQLite reference ERP by default)."""

    database_url: str
    _gateway: object = PrivateAttr(default=None)

    def get_gateway(self):
        from b2b_pipeline.connectors.erp.gateway import ErpGateway

        if self._gateway is None:
            self._gateway = ErpGateway(self.database_url)
        return self._gateway

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._gateway is not None:
            self._gateway.dispose()


class AuditResource(dg.ConfigurableResource):
    """The DuckDB audit trail, exception queue and sync state (``B2B_AUDIT_DB``)."""

    path: str

    def get_store(self):
        from b2b_pipeline.connectors.audit.store import AuditStore

        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        store = AuditStore(Path(self.path))
        store.ensure_schema()
        return store


class AlertsResource(dg.ConfigurableResource):
    """Where exception digests go: the log always, a Slack-compatible webhook when set."""

    webhook_url: str | None = None

    def get_notifier(self):
        from b2b_pipeline.connectors.alerts import AlertNotifier

        return AlertNotifier(self.webhook_url)


class MappingsResource(dg.ConfigurableResource):
    """The business mapping file (``B2B_MAPPINGS``; the shipped default when unset)."""

    path: str | None = None

    def load(self) -> Mappings:
        return load_mappings(self.path)


class PipelineResource(dg.ConfigurableResource):
    """Every system a flow touches, as one resource: an asset asks for ``pipeline`` and opens
    one :class:`~b2b_pipeline.defs.systems.Systems` bundle for its run."""

    sparklayer: SparkLayerResource
    erp: ErpResource
    audit: AuditResource
    alerts: AlertsResource
    mappings: MappingsResource

    def open(self, run_id: str):
        from b2b_pipeline.defs.systems import open_systems

        return open_systems(
            run_id=run_id,
            sparklayer=self.sparklayer,
            erp=self.erp,
            audit=self.audit,
            alerts=self.alerts,
            mappings=self.mappings,
        )


def _env_or_default(name: str, default: str) -> str | dg.EnvVar:
    import os

    # EnvVar keeps the value out of the UI; the default applies when the variable is unset.
    return dg.EnvVar(name) if os.environ.get(name) else default


def build_resources(settings: Settings | None = None) -> dict[str, dg.ConfigurableResource]:
    """The resources for one environment, from the environment variables.

    Flows use ``pipeline`` (all systems at once); checks and sensors use the single systems
    they need.
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
    return {**systems, "pipeline": PipelineResource(**systems)}
