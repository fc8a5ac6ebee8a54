"""A system address that is wrong is one line naming the system, exit 2, never a traceback
and never a password (issue 10, finding 7; contracts/command-line.md).

Wrong means: an ERP URL that is not a SQLAlchemy URL, names a database kind SQLAlchemy does not
know (``foo://``) or a driver that is not installed (``mysql://`` without MySQLdb), a portal
address that is not an http(s) URL, an audit file DuckDB cannot open. Each is run through the
real ``b2b-pipeline`` executable in its own process, with the environment a person would set.
Under Dagster the same one line is what the failed step says (its error, unwrapped the way
the CLI unwraps it), and the run fails in the steps that needed the system, not while starting
its resources.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from b2b_pipeline_tests.conftest import CLIENT_ID, CLIENT_SECRET, SITE_ID

B2B = str(Path(sys.executable).with_name("b2b-pipeline"))
PASSWORD = "Pw-9f3e1c-never-shown"
# The variables of contracts/command-line.md: the test's own values, nothing inherited.
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
)

BAD_ERP_URLS = {
    "driver not installed": f"mysql://erp_user:{PASSWORD}@127.0.0.1:3306/erp",
    "unknown database kind": f"foo://erp_user:{PASSWORD}@erp-host/erp",
    "not a URL": "not a url",
    "port not a number": f"postgresql://erp_user:{PASSWORD}@erp-host:port/erp",
    "unencoded @ in the password": f"postgresql://erp_user:{PASSWORD}@x@erp-host/erp",
}
BAD_PORTAL_URLS = {
    "words": "not a url",
    "ftp scheme": "ftp://x",
    "no host": "http://",
    "no scheme": "localhost:8765",
    "broken IPv6 host": "http://[::1",
    "port out of range": "http://127.0.0.1:99999",
}


def b2b(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in SYSTEM_VARIABLES}
    return subprocess.run(
        [B2B, *args], env={**clean, **env}, capture_output=True, text=True, timeout=180
    )


def problem_line(result: subprocess.CompletedProcess, *names: str) -> str:
    """Exit 2, stderr is one line starting ``b2b-pipeline:`` that names the system; no
    traceback and no password or client secret anywhere in the output."""
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output, output
    assert PASSWORD not in output and CLIENT_SECRET not in output, output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("b2b-pipeline: "), lines[0]
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0].removeprefix("b2b-pipeline: ")


@pytest.fixture
def systems(simulator, tmp_path: Path) -> dict[str, str]:
    """A working portal (the simulator) and a working, empty ERP and audit file."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    return {
        "B2B_DATA_DIR": str(data),
        "SPARKLAYER_BASE_URL": simulator.url,
        "SPARKLAYER_SITE_ID": SITE_ID,
        "SPARKLAYER_CLIENT_ID": CLIENT_ID,
        "SPARKLAYER_CLIENT_SECRET": CLIENT_SECRET,
        "SPARKLAYER_REQUESTS_PER_SECOND": "1000",
        "ERP_DATABASE_URL": f"sqlite:///{data / 'erp.sqlite'}",
        "B2B_AUDIT_DB": str(data / "audit.duckdb"),
    }


# -- the ERP ----------------------------------------------------------------------------------


@pytest.mark.parametrize("url", BAD_ERP_URLS.values(), ids=BAD_ERP_URLS.keys())
def test_a_bad_erp_url_is_one_line_naming_the_erp_and_exit_2(systems, url: str) -> None:
    line = problem_line(b2b("erp", "init", env={**systems, "ERP_DATABASE_URL": url}), "ERP")
    assert "ERP_DATABASE_URL" in line
    if "://" in url and "erp_user" in url:
        assert "erp_user:***@" in line  # which URL it was, with the password masked


def test_a_missing_driver_says_which_module_to_install(systems) -> None:
    env = {**systems, "ERP_DATABASE_URL": BAD_ERP_URLS["driver not installed"]}
    line = problem_line(b2b("erp", "init", env=env), "ERP")
    assert "'MySQLdb'" in line and "not installed" in line
    assert "mysql://erp_user:***@127.0.0.1:3306/erp" in line


@pytest.mark.parametrize("command", [["run"], ["seed", "--no-portal"]], ids=["run", "seed"])
def test_every_command_that_uses_the_erp_refuses_a_bad_url_in_one_line(
    systems, command: list[str]
) -> None:
    for url in (BAD_ERP_URLS["driver not installed"], BAD_ERP_URLS["not a URL"]):
        problem_line(b2b(*command, env={**systems, "ERP_DATABASE_URL": url}), "ERP_DATABASE_URL")


def test_a_password_in_the_query_string_is_masked_too(systems) -> None:
    url = f"postgresql://erp_user@127.0.0.1:1/erp?password={PASSWORD}&sslmode=disable"
    line = problem_line(b2b("erp", "init", env={**systems, "ERP_DATABASE_URL": url}), "ERP")
    assert "could not be reached" in line


# -- the portal -------------------------------------------------------------------------------


@pytest.mark.parametrize("url", BAD_PORTAL_URLS.values(), ids=BAD_PORTAL_URLS.keys())
def test_a_portal_address_that_is_not_a_url_is_one_line_and_exit_2(systems, url: str) -> None:
    line = problem_line(b2b("run", env={**systems, "SPARKLAYER_BASE_URL": url}), "SparkLayer")
    assert "SPARKLAYER_BASE_URL" in line and "Nothing was sent" in line


def test_a_password_in_the_portal_address_is_masked(systems) -> None:
    url = f"ftp://integration:{PASSWORD}@portal.example"
    line = problem_line(b2b("run", env={**systems, "SPARKLAYER_BASE_URL": url}), "SparkLayer")
    assert "ftp://integration:***@portal.example" in line


def test_a_pacing_that_is_not_a_number_is_one_line(systems) -> None:
    env = {**systems, "SPARKLAYER_REQUESTS_PER_SECOND": "fast"}
    problem_line(b2b("run", env=env), "SPARKLAYER_REQUESTS_PER_SECOND")


# -- the audit file ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["a folder", "not a DuckDB file"])
def test_an_audit_file_duckdb_cannot_open_is_one_line_naming_it(
    systems, tmp_path: Path, kind: str
) -> None:
    target = tmp_path / "audit-folder"
    target.mkdir()
    if kind == "not a DuckDB file":
        target = tmp_path / "audit.duckdb"
        target.write_text("id,amount\n1,2\n")
    env = {**systems, "B2B_AUDIT_DB": str(target)}
    for command in (["exceptions", "list"], ["audit", "verify"]):
        line = problem_line(b2b(*command, env=env), "audit trail", str(target))
        assert "B2B_AUDIT_DB" in line


# -- under Dagster ----------------------------------------------------------------------------


def _step_failures(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    from b2b_pipeline.cli.runner import describe_step_failure

    return {
        event.step_key: describe_step_failure(event.step_failure_data.error)[0]
        for event in result.all_events
        if event.is_step_failure and event.step_failure_data.error
    }


def _run_full_cycle(pipeline) -> tuple[dg.ExecuteInProcessResult, str]:
    """The full cycle in a persistent instance; returns the result and its whole event log."""
    with dg.instance_for_test() as instance:
        job = pipeline.definitions().resolve_job_def("full_cycle_job")
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        log = "\n".join(
            dg.serialize_value(record.event_log_entry)
            for record in instance.get_records_for_run(result.run_id, limit=100_000).records
        )
    return result, log


@pytest.mark.parametrize(
    ("variable", "value", "system"),
    [
        ("SPARKLAYER_BASE_URL", f"ftp://integration:{PASSWORD}@portal.example", "SparkLayer"),
        ("ERP_DATABASE_URL", BAD_ERP_URLS["driver not installed"], "ERP"),
    ],
    ids=["portal", "erp"],
)
def test_under_dagster_the_steps_that_need_the_system_fail_with_that_one_line(
    pipeline, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, system: str
) -> None:
    monkeypatch.setenv(variable, value)
    expected = problem_line(b2b("run", env=dict(os.environ)), system)

    result, log = _run_full_cycle(pipeline)
    assert not result.success
    failures = _step_failures(result)
    # The run got as far as its steps: a resource that failed while starting would have failed
    # the run with no step failure at all.
    assert failures, [e.event_type_value for e in result.all_events]
    assert set(failures.values()) == {expected}, failures
    assert PASSWORD not in log
    started = [e for e in result.all_events if e.event_type_value == "STEP_START"]
    assert len(started) > len(failures)  # the steps that do not need the system still ran


def test_an_order_sensor_interval_that_is_not_a_number_is_one_line(systems) -> None:
    env = {**systems, "B2B_ORDER_SENSOR_SECONDS": "often"}
    assert "(seconds)" in problem_line(b2b("run", env=env), "B2B_ORDER_SENSOR_SECONDS")


@pytest.mark.parametrize(("raw", "seconds"), [(None, 30), ("12", 12), ("2", 5), ("7.6", 8)])
def test_the_order_sensor_interval_defaults_to_30_s_and_is_never_below_5(
    monkeypatch: pytest.MonkeyPatch, raw: str | None, seconds: int
) -> None:
    from b2b_pipeline.config.settings import order_sensor_seconds

    if raw is None:
        monkeypatch.delenv("B2B_ORDER_SENSOR_SECONDS", raising=False)
    else:
        monkeypatch.setenv("B2B_ORDER_SENSOR_SECONDS", raw)
    assert order_sensor_seconds() == seconds
