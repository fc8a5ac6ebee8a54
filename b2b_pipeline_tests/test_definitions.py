"""The Definitions object loads, and its shape is pinned: a rename of an asset, job, schedule or
sensor is a change people see in the UI and in alerts, so it must be deliberate.

The snapshot tests build the definitions in-process; the load tests run Dagster's own
``dagster definitions validate -w workspace.yaml`` the way ``dagster dev`` loads the code
location, with placeholder values in every variable (nothing is contacted at load).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from b2b_pipeline.config.mappings import DEFAULT_MAPPINGS_PATH

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))

ASSET_GROUPS = {
    "erp_customers": "erp",
    "erp_products": "erp",
    "erp_price_lists": "erp",
    "erp_price_list_items": "erp",
    "erp_held_back_prices": "erp",
    "erp_inventory": "erp",
    "portal_customer_groups": "portal_sync",
    "portal_customers": "portal_sync",
    "portal_price_lists": "portal_sync",
    "portal_price_probe": "portal_sync",
    "portal_stock_levels": "portal_sync",
    "erp_sales_orders": "orders",
    "order_exceptions": "orders",
    "portal_order_numbers": "orders",
    "month_end_reconciliation": "finance",
}
JOBS = {
    "customer_sync_job",
    "price_sync_job",
    "price_probe_job",
    "order_conservation_job",
    "inventory_sync_job",
    "order_intake_job",
    "full_cycle_job",
    "month_end_job",
}
# name -> (job, cron); every schedule runs in UTC and starts RUNNING.
SCHEDULES = {
    "customer_sync_schedule": ("customer_sync_job", "*/15 * * * *"),
    "inventory_sync_schedule": ("inventory_sync_job", "*/15 * * * *"),
    "nightly_price_comparison_schedule": ("price_sync_job", "0 2 * * *"),
    "price_probe_schedule": ("price_probe_job", "20 * * * *"),
    "order_conservation_schedule": ("order_conservation_job", "45 * * * *"),
    "month_end_close_schedule": ("month_end_job", "0 6 1 * *"),
    "month_to_date_schedule": ("month_end_job", "30 6 * * *"),
}
# name -> (job, minimum interval in seconds); every sensor starts RUNNING.
SENSORS = {
    "erp_customer_changes_sensor": ("customer_sync_job", 30),
    "erp_price_changes_sensor": ("price_sync_job", 120),
    "new_portal_orders_sensor": ("order_intake_job", 30),
    # Run-status sensors watch every job and start none (Dagster's default 30 s interval).
    "transport_failure_sensor": (None, 30),
    "transport_recovery_sensor": (None, 30),
}
# asset -> its checks: each one a promise the product makes, proved after every run.
CHECKS = {
    "erp_customers": {"no_unmapped_customer_group"},
    "erp_price_list_items": {"every_priced_sku_in_catalogue"},
    "portal_customers": {"customer_price_lists_exist_in_portal", "portal_customers_match_erp"},
    "portal_price_lists": {"portal_prices_match_erp"},
    "erp_sales_orders": {
        "every_live_order_posted_or_queued",
        "live_portal_orders_accounted_for",
        "no_on_account_order_pending_payment",
        "erp_totals_match_portal",
        "no_draft_or_quote_in_erp",
    },
    "month_end_reconciliation": {"reconciliation_fully_explained"},
}
# The ERP extracts whose Columns tab is filled from their Pandera model.
EXTRACTS_WITH_COLUMNS = {
    "erp_customers",
    "erp_products",
    "erp_price_lists",
    "erp_price_list_items",
    "erp_inventory",
}
PLACEHOLDER_ENV = {
    "SPARKLAYER_BASE_URL": "https://portal.example.invalid",
    "SPARKLAYER_SITE_ID": "placeholder-site",
    "SPARKLAYER_CLIENT_ID": "placeholder-client",
    "SPARKLAYER_CLIENT_SECRET": "placeholder-secret",
    "ERP_DATABASE_URL": "postgresql+psycopg://erp:placeholder@erp.example.invalid:5432/erp",
    "B2B_ALERT_WEBHOOK_URL": "https://hooks.example.invalid/placeholder",
}


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    from b2b_pipeline.definitions import build_definitions

    return build_definitions()


def validate(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text((REPO / "deploy" / "dagster.yaml").read_text())
    return subprocess.run(
        [DAGSTER, "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env={**os.environ, **PLACEHOLDER_ENV, "DAGSTER_HOME": str(home), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_workspace_loads_with_placeholder_environment(tmp_path: Path) -> None:
    result = validate(tmp_path, B2B_DATA_DIR=str(tmp_path / "data"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful for code location b2b_pipeline" in (result.stdout + result.stderr)


def test_invalid_mapping_file_stops_the_code_location_naming_the_key(tmp_path: Path) -> None:
    mappings = yaml.safe_load(DEFAULT_MAPPINGS_PATH.read_text())
    mappings["price_tolerance"] = "a penny or so"
    path = tmp_path / "mappings.yaml"
    path.write_text(yaml.safe_dump(mappings))
    result = validate(tmp_path, B2B_MAPPINGS=str(path), B2B_DATA_DIR=str(tmp_path / "data"))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "InvalidMappings" in output
    assert f"mapping file {path} is invalid: price_tolerance" in output


def test_asset_keys_and_groups_are_pinned(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    groups = {
        key.to_user_string(): graph.get(key).group_name
        for key in graph.get_all_asset_keys()
        if graph.get(key).is_materializable
    }
    assert groups == ASSET_GROUPS


def test_every_asset_has_a_description_a_group_and_kinds(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        name = key.to_user_string()
        assert node.description and len(node.description) > 20, f"{name} has no description"
        assert node.group_name in {"erp", "portal_sync", "orders", "finance"}, name
        assert node.kinds, f"{name} declares no kinds"


def test_asset_checks_are_pinned(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    checks: dict[str, set[str]] = {}
    for assets_def in graph.assets_defs:
        for spec in assets_def.check_specs:
            checks.setdefault(spec.asset_key.to_user_string(), set()).add(spec.name)
    assert checks == CHECKS


def test_stock_in_the_portal_has_a_freshness_policy_that_matches_its_schedule(
    defs: dg.Definitions,
) -> None:
    """Stock is pushed every 15 minutes: the policy warns after one missed run (20 min) and
    fails after two (30 min); Dagster's freshness daemon evaluates it in the UI."""
    from datetime import timedelta

    policy = defs.resolve_asset_graph().get(dg.AssetKey("portal_stock_levels")).freshness_policy
    assert policy is not None
    assert (policy.warn_window.to_timedelta(), policy.fail_window.to_timedelta()) == (
        timedelta(minutes=20),
        timedelta(minutes=30),
    )


def test_every_asset_has_an_owner_and_its_domain_tag(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.owners and all(o.startswith("team:") for o in node.owners), key
        assert node.tags.get("domain") == node.group_name, key


def test_dg_check_defs_passes(tmp_path: Path) -> None:
    """What Dagster recommends for checking a project: ``dg check defs`` loads the location."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    result = subprocess.run(
        [str(Path(sys.executable).with_name("dg")), "check", "defs"],
        cwd=REPO,
        env={
            **os.environ,
            **PLACEHOLDER_ENV,
            "DAGSTER_HOME": str(home),
            "B2B_DATA_DIR": str(tmp_path / "data"),
            "VIRTUAL_ENV": str(Path(sys.executable).parents[1]),
        },
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All definitions loaded successfully" in result.stdout + result.stderr


def test_every_asset_check_says_what_it_proves(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    specs = [spec for ad in graph.assets_defs for spec in ad.check_specs]
    assert len(specs) >= 10
    for spec in specs:
        assert spec.description, f"{spec.key.to_user_string()} has no description"


def test_jobs_are_pinned(defs: dg.Definitions) -> None:
    names = {job.name for job in defs.resolve_all_job_defs() if not job.name.startswith("__")}
    assert names == JOBS


def test_schedules_are_pinned_and_start_running(defs: dg.Definitions) -> None:
    schedules = {
        s.name: (s.job_name, s.cron_schedule, s.default_status, s.execution_timezone)
        for s in defs.schedules
    }
    running = dg.DefaultScheduleStatus.RUNNING
    assert schedules == {
        name: (job, cron, running, "UTC") for name, (job, cron) in SCHEDULES.items()
    }


def test_sensors_are_pinned_and_start_running(defs: dg.Definitions) -> None:
    sensors = {
        s.name: (s.job_name if s.has_jobs else None, s.minimum_interval_seconds, s.default_status)
        for s in defs.sensors
    }
    running = dg.DefaultSensorStatus.RUNNING
    assert sensors == {name: (job, every, running) for name, (job, every) in SENSORS.items()}


def test_no_asset_holds_a_pool_slot_so_no_run_can_stall_the_orders(defs: dg.Definitions) -> None:
    """A pool slot is held for a whole step: an order run waited minutes behind a slow sync,
    and a run killed mid-step kept its slot and stopped every later order. The audit store
    serialises DuckDB writers itself (short transactions, bounded lock waits), so no asset
    takes a slot, and the shipped instance files declare no pools."""
    graph = defs.resolve_asset_graph()
    pooled = {
        key.to_user_string()
        for assets_def in graph.assets_defs
        if assets_def.is_executable and assets_def.op.pool
        for key in assets_def.keys
    }
    assert pooled == set()
    for name in ("dagster.yaml", "dagster.postgres.yaml"):
        instance = yaml.safe_load((REPO / "deploy" / name).read_text())
        assert "concurrency" not in instance, name
        assert instance["run_monitoring"]["enabled"] is True, name


def test_every_job_runs_its_steps_in_one_process(defs: dg.Definitions) -> None:
    """I/O-bound steps: a process per step cost 10-34 s each under the UI for 1-9 s of work."""
    for job in defs.resolve_all_job_defs():
        if job.name == "__ASSET_JOB":
            continue
        assert job.executor_def.name == dg.in_process_executor.name, job.name


def test_erp_extracts_fill_the_columns_tab(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    for name in sorted(EXTRACTS_WITH_COLUMNS):
        schema = graph.get(dg.AssetKey(name)).metadata.get("dagster/column_schema")
        assert isinstance(schema, dg.TableSchema), f"{name} has no Columns tab"
        columns = {column.name: column for column in schema.columns}
        assert len(columns) >= 3, name
        assert all(column.description for column in columns.values()), name
    customers = graph.get(dg.AssetKey("erp_customers")).metadata["dagster/column_schema"]
    assert {"account_code", "customer_group", "credit_hold"} <= {c.name for c in customers.columns}


def test_secrets_reach_the_resources_as_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The UI shows a resource's configuration: the secret must be an EnvVar, not its value."""
    from b2b_pipeline.defs.resources import build_resources

    for name, value in PLACEHOLDER_ENV.items():
        monkeypatch.setenv(name, value)
    resources = build_resources()
    assert resources["sparklayer"].client_secret == dg.EnvVar("SPARKLAYER_CLIENT_SECRET")
    assert resources["erp"].database_url == dg.EnvVar("ERP_DATABASE_URL")
    assert resources["alerts"].webhook_url == dg.EnvVar("B2B_ALERT_WEBHOOK_URL")


def test_portal_call_figures_outlive_the_clients_of_a_run(
    pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resource's clients are gone when the run ends; their figures are not: the calls
    they made equal what the portal received, and the time they waited on the rate limit
    (here the production pace of 20 calls a second) is kept."""
    from b2b_pipeline.defs.resources import portal_call_stats, reset_portal_call_stats

    monkeypatch.setenv("SPARKLAYER_REQUESTS_PER_SECOND", "20")
    reset_portal_call_stats()
    pipeline.reset_calls()
    pipeline.run("customer_sync_job")
    stats = portal_call_stats()
    received = pipeline.calls()["total"]
    assert stats.calls == received > 40  # one PUT per account at least
    assert stats.retries == 0
    # Beyond the first second's burst of 20 calls, the rest wait their turn (less the time the
    # run spends between calls, which refills the bucket): clearly more than nothing.
    assert stats.rate_limit_wait_seconds > 0.25
    reset_portal_call_stats()
    assert portal_call_stats().calls == 0


def test_the_price_probe_job_reads_the_erp_as_it_is_now(defs: dg.Definitions) -> None:
    """The probe compares the portal with the ERP's current prices: its job runs the ERP
    extracts with it, and nothing that writes to the portal."""
    job = defs.resolve_job_def("price_probe_job")
    assets = {key.to_user_string() for key in job.asset_layer.selected_asset_keys}
    assert assets == {
        "erp_products",
        "erp_price_lists",
        "erp_price_list_items",
        "erp_held_back_prices",
        "erp_customers",
        "portal_price_probe",
    }
