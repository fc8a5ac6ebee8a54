"""``b2b-pipeline`` as operations and scripts use it (contracts/command-line.md), on the real
simulator, a SQLite ERP and a DuckDB audit file.

Exit status: 0 success, 1 the command ran and found problems, 2 bad usage or a system that
cannot be reached; an unreachable system is ONE line naming it, with no traceback and no secret.
Commands that run Dagster jobs are run as a real process (the definitions read the environment
once per process, as in production); the others through click's runner.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from b2b_pipeline.cli.main import cli
from b2b_pipeline.connectors.sparklayer.purchases import purchase_id as pid
from b2b_pipeline_tests.conftest import CLIENT_ID, CLIENT_SECRET, SITE_ID

B2B = str(Path(sys.executable).with_name("b2b-pipeline"))
CONTRACT_COMMANDS = ["sim", "erp", "seed", "run", "exceptions", "reconcile", "audit"]
ERP_PASSWORD = "secretpw"
UNREACHABLE_ERP = f"postgresql+psycopg://u:{ERP_PASSWORD}@127.0.0.1:1/x"


def b2b(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [B2B, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the socket is: nothing listens


def assert_one_line_naming(result: subprocess.CompletedProcess, *names: str) -> str:
    """Exit 2, and stderr's last line names the system; no traceback, no secret anywhere."""
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    assert CLIENT_SECRET not in output and ERP_PASSWORD not in output
    problem = [line for line in result.stderr.splitlines() if line.startswith("b2b-pipeline:")]
    assert len(problem) == 1, result.stderr
    for name in names:
        assert name in problem[0], problem[0]
    # Nothing else on stderr but the "Running one full cycle" progress line.
    others = [line for line in result.stderr.splitlines() if line and line not in problem]
    assert all(line.startswith("Running one full cycle") for line in others), result.stderr
    return problem[0]


@pytest.fixture
def fresh_erp(simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The environment points at the simulator and an ERP file that does not exist yet."""
    url = f"sqlite:///{tmp_path / 'data' / 'erp.sqlite'}"
    monkeypatch.setenv("ERP_DATABASE_URL", url)
    monkeypatch.setenv("SPARKLAYER_BASE_URL", simulator.url)
    monkeypatch.setenv("SPARKLAYER_SITE_ID", SITE_ID)
    monkeypatch.setenv("SPARKLAYER_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("SPARKLAYER_CLIENT_SECRET", CLIENT_SECRET)
    return url


def erp_tables(url: str) -> dict[str, pd.DataFrame]:
    from b2b_pipeline.connectors.erp.reference_edits import ReferenceErp

    gateway = ReferenceErp(url)
    try:
        return {
            "customers": gateway.read_customers().sort_values("account_code", ignore_index=True),
            "products": gateway.read_products().sort_values("sku", ignore_index=True),
            "prices": gateway.read_price_list_items()
            .sort_values(["price_list_code", "sku", "min_quantity"], ignore_index=True)
            .drop(columns=["updated_at"], errors="ignore"),
        }
    finally:
        gateway.dispose()


# -- commands that need no job run ------------------------------------------------------------


def test_help_lists_every_command_of_the_contract() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    commands = result.output.split("Commands:", 1)[1]
    listed = {line.split()[0] for line in commands.splitlines() if line.strip()}
    assert set(CONTRACT_COMMANDS) <= listed
    exceptions = CliRunner().invoke(cli, ["exceptions", "--help"])
    for sub in ("list", "show", "approve", "retry", "ignore"):
        assert sub in exceptions.output


def test_bad_usage_exits_2() -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["no-such-command"]).exit_code == 2
    assert runner.invoke(cli, ["run", "--bogus"]).exit_code == 2
    assert runner.invoke(cli, ["run", "--format", "yaml"]).exit_code == 2
    assert runner.invoke(cli, ["reconcile", "--month", "2025-13"]).exit_code == 2


def test_erp_init_twice_is_safe_and_keeps_the_data(fresh_erp: str) -> None:
    runner = CliRunner()
    first = runner.invoke(cli, ["erp", "init"])
    assert first.exit_code == 0, first.output
    assert "Reference ERP ready" in first.output
    assert runner.invoke(cli, ["seed", "--no-portal"]).exit_code == 0
    before = erp_tables(fresh_erp)
    second = runner.invoke(cli, ["erp", "init"])
    assert second.exit_code == 0, second.output
    after = erp_tables(fresh_erp)
    assert len(after["customers"]) == 40
    for name, frame in before.items():
        pd.testing.assert_frame_equal(after[name], frame)


def test_seed_twice_gives_the_same_erp_and_if_empty_does_nothing(fresh_erp: str) -> None:
    runner = CliRunner()
    first = runner.invoke(cli, ["seed"])
    assert first.exit_code == 0, first.output
    assert "40 customers" in first.stdout
    assert "self-registered companies" in first.stdout
    seeded = erp_tables(fresh_erp)
    second = runner.invoke(cli, ["seed", "--no-portal"])
    assert second.exit_code == 0, second.output
    for name, frame in seeded.items():
        pd.testing.assert_frame_equal(erp_tables(fresh_erp)[name], frame)
    # A different size then --if-empty: the ERP has data, so nothing changes.
    skipped = runner.invoke(cli, ["seed", "--if-empty", "--customers", "5", "--no-portal"])
    assert skipped.exit_code == 0
    assert "nothing seeded" in skipped.stdout
    assert len(erp_tables(fresh_erp)["customers"]) == 40


def test_seed_at_benchmark_scale_prints_each_stage(fresh_erp: str) -> None:
    result = CliRunner().invoke(
        cli, ["seed", "--customers", "2000", "--skus", "5000", "--no-portal"]
    )
    assert result.exit_code == 0, result.output
    stages = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert stages[0].startswith("[1/2] Generating the demo merchant: 2,000 customers, 5,000 SKUs")
    assert stages[1].startswith("[2/2] Writing ") and "rows to the ERP" in stages[1]
    assert "2,000 customers, 5,000 SKUs" in result.stdout
    assert len(erp_tables(fresh_erp)["products"]) == 5000


def test_unreachable_erp_is_one_line_without_password(simulator, monkeypatch) -> None:
    monkeypatch.setenv("ERP_DATABASE_URL", UNREACHABLE_ERP)
    monkeypatch.setenv("SPARKLAYER_BASE_URL", simulator.url)
    for command in (["erp", "init"], ["seed"]):
        result = CliRunner().invoke(cli, command)
        assert result.exit_code == 2, result.output
        assert isinstance(result.exception, SystemExit)  # a clean exit, not a crash
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1
        assert "ERP database postgresql+psycopg://u:***@127.0.0.1:1/x" in result.stderr
        assert ERP_PASSWORD not in result.output
    run = b2b("run", ERP_DATABASE_URL=UNREACHABLE_ERP, SPARKLAYER_BASE_URL=simulator.url)
    line = assert_one_line_naming(run, "ERP database", "127.0.0.1:1")
    assert "u:***@" in line


# -- b2b-pipeline run -------------------------------------------------------------------------


@pytest.mark.slow
def test_run_prints_a_summary_and_exits_0_with_exceptions_queued(pipeline) -> None:
    pipeline.run("full_cycle_job")  # accounts and prices in the portal, so buyers can order
    # Two orders: one for a good account, one whose account goes on credit hold before the run.
    good = pipeline.order("CUST0002", [{"sku": "BRK-0001", "quantity": 2}])
    held = pipeline.order("CUST0001", [{"sku": "BRK-0001", "quantity": 1}])
    pipeline.erp.set_credit_hold("CUST0001", True)

    result = b2b("run", "--format", "json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["success"] is True
    assert summary["error"] is None
    assert summary["failed_checks"] == {}
    assert summary["checks"] and all(summary["checks"].values())
    assert summary["assets"]["erp_sales_orders"]["received"] == 2
    assert summary["assets"]["order_exceptions"]["new_exceptions"] == 1
    assert "Traceback" not in result.stderr and "DEBUG" not in result.stderr

    queue = pipeline.audit.exceptions(status="open")
    assert list(queue["entity_key"]) == [pid(held)]
    assert list(queue["category"]) == ["AUTHORISATION"]
    assert list(pipeline.sales_orders()["external_ref"]) == [pid(good)]


@pytest.mark.slow
def test_run_exits_1_and_names_the_check_when_a_check_finds_a_problem(pipeline) -> None:
    pipeline.erp.set_customer_group("CUST0002", "franchise")  # no portal group mapped
    result = b2b("run")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    # The table for people: one line per asset, then the checks and what the failed one says.
    lines = result.stdout.splitlines()
    assert lines[0].startswith("erp_customers ")
    assert any(line.startswith("order_exceptions ") for line in lines)
    failed = [line for line in lines if line.startswith("checks: ")]
    assert failed and "FAILED: erp_customers:no_unmapped_customer_group" in failed[0]
    assert "ERP groups with no portal group: franchise" in result.stdout


@pytest.mark.slow
def test_portal_failing_during_the_run_is_one_line_naming_the_portal(pipeline) -> None:
    """The portal answers at the start, then fails on the orders: the Dagster step failure is
    unwrapped to the portal's own message, not "Error occurred while executing op"."""
    pipeline.faults(
        fail_next=[{"method": "GET", "endpoint": "/api/v1/purchases", "status": 503, "count": 50}]
    )
    result = b2b("run")
    line = assert_one_line_naming(result, "SparkLayer GET /api/v1/purchases", "step order_intake")
    assert "gave up after 5 attempts" in line
    assert "DagsterExecutionStepExecutionError" not in result.stderr
    assert "Error occurred while executing" not in result.stderr


def test_unreachable_portal_is_one_line_naming_it(pipeline) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    result = b2b("run", SPARKLAYER_BASE_URL=url)
    assert_one_line_naming(result, "SparkLayer", url)


def test_wrong_portal_credentials_are_one_line_without_the_secret(pipeline) -> None:
    wrong = "wrong-secret-value-42"
    result = b2b("run", SPARKLAYER_CLIENT_SECRET=wrong)
    line = assert_one_line_naming(result, "SparkLayer", "credentials", SITE_ID)
    assert wrong not in result.stdout + result.stderr
    assert "SPARKLAYER_CLIENT_SECRET" in line  # says what to check
