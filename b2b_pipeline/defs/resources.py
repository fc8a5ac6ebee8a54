"""Dagster resources: the portal, the ERP, the audit store and alerts.

Each is configured from the environment variables of ``config/settings.py`` through ``EnvVar``
(so the Dagster UI shows the variable's name, never its value) and falls back to the embedded
defaults when a variable is unset. Resources only open connections; the business rules live in
``b2b_pipeline.domain``.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from b2b_pipeline.config.mappings import Mappings, load_mappings
from b2b_pipeline.config.settings import Settings


class SparkLayerResource(dg.ConfigurableResource):
    """The SparkLayer API (the embedded simulator when SPARKLAYER_BASE_URL is unset)."""

    base_url: str
    site_id: str
    client_id: str
    client_secret: str
    requests_per_second: float = 20.0

    def get_client(self):
        from b2b_pipeline.connectors.sparklayer.client import SparkLayerClient

        return SparkLayerClient(
            self.base_url,
            self.site_id,
            self.client_id,
            self.client_secret,
            requests_per_second=self.requests_per_second,
        )


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


def _env_or_default(name: str, default: str) -> str | dg.EnvVar:
    import os

    # EnvVar keeps the value out of the UI; the default applies when the variable is unset.
    return dg.EnvVar(name) if os.environ.get(name) else default


def build_resources(settings: Settings | None = None) -> dict[str, dg.ConfigurableResource]:
    """The resources for one environment, from the environment variables."""
    settings = settings or Settings.from_env()
    return {
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
