"""Where the pipeline's systems are, read from the environment.

Every endpoint and secret comes from an environment variable; unset means the embedded
default (the SparkLayer simulator on loopback, a SQLite reference ERP and a DuckDB audit file
under ``data/``). This module is the only place that reads these variables, so the README's
configuration table and this file must agree.

A value that cannot be read (a pacing that is not a positive number) is a
:class:`ConfigurationError` with one line naming the variable; the CLI prints it and exits 2.
Addresses are not checked here: building the Dagster definitions reads these settings, and an
unusable portal or ERP address must fail the step that needs that system, with the
connector's one-line error (``PortalConfigurationError``, ``ErpConfigurationError``), not the
loading of every definition.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

# Demo values the embedded simulator accepts when the SPARKLAYER_* variables are unset.
# They protect nothing: the simulator only listens on loopback.
DEMO_SITE_ID = "demo-site"
DEMO_CLIENT_ID = "b2b-pipeline-demo"
DEMO_CLIENT_SECRET = "demo-secret-not-for-production"
SIMULATOR_HOST = "127.0.0.1"
SIMULATOR_PORT = 8765


class ConfigurationError(ValueError):
    """An environment variable holds a value the pipeline cannot use (message: one line)."""


def _positive_number(name: str, default: float, *, unit: str) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ConfigurationError(f"{name} must be a positive number ({unit}), not {raw[:40]!r}")
    return value


PACKAGE_ROOT = Path(__file__).resolve().parents[1]

DEFAULT_ORDER_SENSOR_SECONDS = 30
# Below this a tick (one purchase-list page) would use a noticeable share of the portal's
# rate limit for nothing.
MIN_ORDER_SENSOR_SECONDS = 5


def order_sensor_seconds() -> int:
    """How often the order sensor looks for new purchases: ``B2B_ORDER_SENSOR_SECONDS``
    (default 30, at least 5), read when the definitions load."""
    seconds = _positive_number(
        "B2B_ORDER_SENSOR_SECONDS", DEFAULT_ORDER_SENSOR_SECONDS, unit="seconds"
    )
    return max(MIN_ORDER_SENSOR_SECONDS, round(seconds))


def project_root() -> Path | None:
    """The source checkout the package runs from, or None for an installed package."""
    root = PACKAGE_ROOT.parent
    if (root / "pyproject.toml").is_file() and (root / "b2b_pipeline").is_dir():
        return root
    return None


def data_dir() -> Path:
    """The folder for generated files, whatever folder the process runs from.

    ``B2B_DATA_DIR`` when set; otherwise the ``data/`` folder of the source checkout the package
    runs from (the folder holding ``pyproject.toml`` beside ``b2b_pipeline/``); otherwise, for an
    installed package, the user's data folder (``$XDG_DATA_HOME/b2b-pipeline``, by default
    ``~/.local/share/b2b-pipeline``). Never the current folder: run from another folder, a
    command used to create an empty ``data/`` there and report on nothing, and a Dagster run
    would have written beside it.
    """
    configured = os.environ.get("B2B_DATA_DIR")
    if configured:
        return Path(configured).expanduser().resolve()
    root = project_root()
    if root is not None:
        return root / "data"
    user_data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(user_data) / "b2b-pipeline"


@dataclass(frozen=True)
class Settings:
    """Connection settings for the portal, the ERP, the audit store and alerts."""

    data_dir: Path
    sparklayer_base_url: str
    sparklayer_site_id: str
    sparklayer_client_id: str
    # repr=False: a Settings object printed in a log or a traceback must not show the secret.
    sparklayer_client_secret: str = field(repr=False)
    erp_database_url: str
    audit_db: Path
    alert_webhook_url: str | None = field(default=None, repr=False)
    mappings_path: Path | None = None
    # Client-side pacing of SparkLayer calls; SparkLayer publishes no numeric limit.
    sparklayer_requests_per_second: float = 20.0
    # How often the order sensor looks for new purchases (read when the definitions load).
    order_sensor_seconds: int = DEFAULT_ORDER_SENSOR_SECONDS

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        base = data_dir()
        audit = env.get("B2B_AUDIT_DB") or str(base / "audit.duckdb")
        mappings = env.get("B2B_MAPPINGS")
        return cls(
            data_dir=base,
            sparklayer_base_url=(
                env.get("SPARKLAYER_BASE_URL") or f"http://{SIMULATOR_HOST}:{SIMULATOR_PORT}"
            ).rstrip("/"),
            sparklayer_site_id=env.get("SPARKLAYER_SITE_ID") or DEMO_SITE_ID,
            sparklayer_client_id=env.get("SPARKLAYER_CLIENT_ID") or DEMO_CLIENT_ID,
            sparklayer_client_secret=env.get("SPARKLAYER_CLIENT_SECRET") or DEMO_CLIENT_SECRET,
            erp_database_url=env.get("ERP_DATABASE_URL") or f"sqlite:///{base / 'erp.sqlite'}",
            audit_db=Path(audit),
            alert_webhook_url=env.get("B2B_ALERT_WEBHOOK_URL") or None,
            mappings_path=Path(mappings) if mappings else None,
            sparklayer_requests_per_second=_positive_number(
                "SPARKLAYER_REQUESTS_PER_SECOND", 20.0, unit="requests per second"
            ),
            order_sensor_seconds=order_sensor_seconds(),
        )
