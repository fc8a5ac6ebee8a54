"""What the console's pages use: the audit store, the ERP and the portal (opened per request,
closed after), the users, and the pipeline runs a page may start.

Runs started from the console (a retry, a reconciliation) go through ``cli.runner`` exactly as
the command line's do (same definitions, recorded in ``DAGSTER_HOME`` when set, so they show in
the Dagster UI), one at a time: two people pressing *retry* at once wait for each other rather
than run two intakes side by side in one process.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from b2b_pipeline.config.settings import Settings
from b2b_pipeline.connectors.audit.store import AuditStore
from b2b_pipeline.console.auth import UserDirectory
from b2b_pipeline.console.config import ConsoleConfig
from b2b_pipeline.console.sessions import SessionCodec

if TYPE_CHECKING:
    from b2b_pipeline.config.mappings import Mappings
    from b2b_pipeline.connectors.erp.gateway import ErpGateway
    from b2b_pipeline.connectors.sparklayer.client import SparkLayerClient
    from b2b_pipeline.flows.exception_actions import RunJob, RunSummary

log = logging.getLogger(__name__)

# How long a page waits for another console-started run to finish before saying so.
RUN_WAIT_SECONDS = 900
MAX_FLASHES = 1000

# run_month_end(month) -> (summary, MonthEnd or None): the reconciliation a page starts.
RunMonthEnd = Callable[[str], tuple[Any, Any]]


class ConsoleBusy(RuntimeError):
    """Another run started from the console is still going."""


def _default_run_retry(job_name: str, params: Mapping[str, Any]) -> RunSummary:
    from b2b_pipeline.cli.runner import run_retry

    return run_retry(job_name, params)


def _default_run_month_end(month: str) -> tuple[Any, Any]:
    from b2b_pipeline.cli.runner import run_job

    summary = run_job("month_end_job", partition_key=month, outputs=("month_end_reconciliation",))
    value = summary.values.get("month_end_reconciliation") if summary.success else None
    return summary, value


@dataclass
class Console:
    settings: Settings
    config: ConsoleConfig
    users: UserDirectory
    codec: SessionCodec
    run_retry_job: Callable[[str, Mapping[str, Any]], Any] = _default_run_retry
    run_month_end_job: RunMonthEnd = _default_run_month_end
    _run_lock: threading.Lock = field(default_factory=threading.Lock)
    _flashes: OrderedDict[str, list[dict[str, Any]]] = field(default_factory=OrderedDict)
    _flash_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_settings(cls, settings: Settings, config: ConsoleConfig) -> Console:
        return cls(
            settings=settings,
            config=config,
            users=UserDirectory(config.users_path),
            codec=SessionCodec(
                config.session_secret, max_age_seconds=int(config.session_hours * 3600)
            ),
        )

    # -- systems -------------------------------------------------------------------------------

    def store(self) -> AuditStore:
        return AuditStore(self.settings.audit_db)

    def mappings(self) -> Mappings:
        from b2b_pipeline.config.mappings import mappings_from_env

        return mappings_from_env()

    @contextmanager
    def erp(self) -> Iterator[ErpGateway]:
        from b2b_pipeline.connectors.erp.gateway import ErpGateway

        gateway = ErpGateway(self.settings.erp_database_url)
        try:
            yield gateway
        finally:
            gateway.dispose()

    @contextmanager
    def portal(self) -> Iterator[SparkLayerClient]:
        from b2b_pipeline.connectors.sparklayer.client import SparkLayerClient

        settings = self.settings
        with SparkLayerClient(
            settings.sparklayer_base_url,
            settings.sparklayer_site_id,
            settings.sparklayer_client_id,
            settings.sparklayer_client_secret,
            requests_per_second=settings.sparklayer_requests_per_second,
        ) as client:
            yield client

    # -- runs ----------------------------------------------------------------------------------

    @contextmanager
    def _one_run_at_a_time(self) -> Iterator[None]:
        if not self._run_lock.acquire(timeout=RUN_WAIT_SECONDS):
            raise ConsoleBusy(
                "Another run started from the console is still going; try again in a minute."
            )
        try:
            yield
        finally:
            self._run_lock.release()

    @property
    def run_job(self) -> RunJob:
        """The ``run_job`` port of ``flows.exception_actions.retry_exceptions``."""

        def run(job_name: str, params: Mapping[str, Any]) -> Any:
            with self._one_run_at_a_time():
                log.info("console run of %s", job_name)
                return self.run_retry_job(job_name, params)

        return run

    def reconcile(self, month: str) -> tuple[Any, Any]:
        with self._one_run_at_a_time():
            log.info("console reconciliation of %s", month)
            return self.run_month_end_job(month)

    # -- one-shot messages for the page after a POST (kept here, not in the cookie: a bulk
    # retry's messages would not fit in one) -------------------------------------------------

    def put_flash(self, messages: list[dict[str, Any]]) -> str:
        token = secrets.token_urlsafe(16)
        with self._flash_lock:
            self._flashes[token] = messages
            while len(self._flashes) > MAX_FLASHES:
                self._flashes.popitem(last=False)
        return token

    def take_flash(self, token: str | None) -> list[dict[str, Any]]:
        if not token:
            return []
        with self._flash_lock:
            return self._flashes.pop(token, [])
