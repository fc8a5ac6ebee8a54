"""The command line as finance and operations read it (issue 12, item 7): the exception queue
with full messages and the order numbers buyers quote, readable confirmations, prices as money,
an unknown account refused, and files found wherever the command is run from.

On real components: the simulator over HTTP, a SQLite ERP, a DuckDB audit file; commands that
must prove where they look for files run as a real process from another folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from b2b_pipeline.cli import paths
from b2b_pipeline.cli.main import cli
from b2b_pipeline.connectors.sparklayer.purchases import visible_id
from b2b_pipeline_tests.harness import Pipeline
from b2b_pipeline_tests.test_month_end import MONTH, TRADE, place, ready_portal

B2B = str(Path(sys.executable).with_name("b2b-pipeline"))


def invoke(*args: str, columns: int = 100):
    return CliRunner().invoke(cli, list(args), env={"COLUMNS": str(columns)})


def words(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def mispriced(pipeline: Pipeline) -> dict[str, str]:
    """A mispriced order in the queue (a PRICING exception with a long message)."""
    ready_portal(pipeline)
    purchase, _ = place(pipeline, TRADE, f"{MONTH}-05T09:00:00Z", unit_price=1.00)
    pipeline.run("order_intake_job")
    (exception,) = pipeline.audit.exceptions(status="open").to_dict(orient="records")
    return {
        "purchase": purchase,
        "number": visible_id(pipeline.portal.get_purchase(purchase)),
        "exception_id": exception["exception_id"],
        "message": exception["message"],
    }


def test_the_queue_shows_each_message_in_full_and_the_order_number_the_buyer_sees(
    mispriced: dict[str, str],
) -> None:
    message = mispriced["message"]
    assert len(message) > 150, "a message long enough to have been cut at 90 characters"

    listed = invoke("exceptions", "list", "--category", "pricing")  # lower case is fine
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100  # wrapped to the terminal ...
    assert words(message) in words(listed.stdout)  # ... and never cut
    assert mispriced["number"] in listed.stdout
    assert mispriced["purchase"] not in listed.stdout
    assert mispriced["purchase"][:12] not in listed.stdout  # no truncated UUID either

    wide = invoke("exceptions", "list", "--wide")
    assert wide.exit_code == 0
    row = next(line for line in wide.stdout.splitlines() if mispriced["exception_id"] in line)
    assert row.endswith(message)  # one line per exception, the message whole

    as_json = json.loads(invoke("exceptions", "list", "--format", "json").stdout)
    assert [(r["exception_id"], r["order_number"], r["message"]) for r in as_json] == [
        (mispriced["exception_id"], mispriced["number"], message)
    ]
    assert invoke("exceptions", "list", "--category", "Mapping").stdout.strip() == "(none)"


def test_approve_confirms_in_a_sentence_and_a_decision_that_does_not_fit_is_refused(
    mispriced: dict[str, str],
) -> None:
    number = mispriced["number"]
    wrong = invoke("exceptions", "approve", number, "--post-on-hold", "--by", "j.finance")
    assert wrong.exit_code == 2
    assert wrong.stderr.startswith(
        "b2b-pipeline: Only an order from an account on credit hold can be posted on hold;"
    )
    approved = invoke(
        "exceptions", "approve", number, "--accept", "ERP-price", "--by", "j.finance", "--no-retry"
    )
    assert approved.exit_code == 0, approved.output
    assert approved.stdout == (
        f"Order {number} approved by j.finance: it will be posted at the ERP's price. "
        "Retry it to post it.\n"
    )
    shown = invoke("exceptions", "show", number)
    assert shown.exit_code == 0
    assert f"order_number: {number}" in shown.stdout
    history = shown.stdout.split("history:", 1)[1]
    assert "exception_approved (by j.finance; decision: {'accept': 'erp_price'})" in history


@pytest.fixture
def price_history(audit, monkeypatch: pytest.MonkeyPatch) -> datetime:
    """CUST0001 saw BRK-0001 at 9.50 from ten days ago, then 11.00 from yesterday (current)."""
    monkeypatch.setenv("B2B_AUDIT_DB", str(audit.path))
    now = datetime.now(UTC).replace(microsecond=0)
    earlier, yesterday = now - timedelta(days=10), now - timedelta(days=1)
    audit.record_customer_lists(
        pd.DataFrame(
            {
                "account_code": ["CUST0001"],
                "price_lists": [["PL-TRADE-GBP"]],
                "discount_percentage": [0.0],
                "pushed_at": [earlier],
            }
        )
    )
    for price, at in ((9.5, earlier), (11.0, yesterday)):
        audit.record_prices(
            pd.DataFrame(
                {
                    "price_list_slug": ["PL-TRADE-GBP"],
                    "sku": ["BRK-0001"],
                    "min_quantity": [1],
                    "price": [price],
                    "currency": ["GBP"],
                    "pushed_at": [at],
                }
            )
        )
    return now


def test_prices_prints_money_with_two_decimals_and_an_open_period_as_now(
    price_history: datetime,
) -> None:
    three_days_ago = (price_history - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%S")
    then = invoke("prices", "--account", "CUST0001", "--sku", "BRK-0001", "--on", three_days_ago)
    assert then.exit_code == 0, then.output
    row = then.stdout.splitlines()[-1].split()
    assert "9.50" in row and "9.5" not in row  # money as on an invoice, not 9.5
    assert "NaT" not in then.stdout

    current = invoke("prices", "--account", "CUST0001", "--sku", "BRK-0001")
    assert current.exit_code == 0, current.output
    row = current.stdout.splitlines()[-1]
    assert "11.00" in row and row.rstrip().endswith("now")
    assert "NaT" not in current.stdout
    # Scripts keep the numbers: null is the open end.
    as_json = json.loads(
        invoke("prices", "--account", "CUST0001", "--sku", "BRK-0001", "--format", "json").stdout
    )
    assert [(r["price"], r["valid_to"]) for r in as_json] == [(11.0, None)]


def test_prices_for_an_unknown_account_is_an_error(price_history: datetime) -> None:
    unknown = invoke("prices", "--account", "CUST9999", "--sku", "BRK-0001")
    assert unknown.exit_code == 1
    assert unknown.stdout == ""
    assert "CUST9999" in unknown.stderr and "check the account code" in unknown.stderr


# -- where the files are ----------------------------------------------------------------------


def run_from(folder: Path, *args: str, **env: str | None) -> subprocess.CompletedProcess:
    environment = {**os.environ}
    for name, value in env.items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [B2B, *args], cwd=folder, env=environment, capture_output=True, text=True, timeout=180
    )


def test_without_b2b_data_dir_the_data_folder_is_the_projects_not_the_current_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("B2B_DATA_DIR")
    monkeypatch.chdir(tmp_path)
    root = paths.project_root()
    assert root is not None and (root / "pyproject.toml").is_file()
    assert paths.default_data_dir() == root / "data"
    # The settings every Dagster resource and the console build follow the same rule: the
    # audit trail, the ERP file and the audit key are never looked for in the current folder.
    from b2b_pipeline.config.settings import Settings

    assert Settings.from_env().audit_db.parent == root / "data"
    monkeypatch.setenv("B2B_DATA_DIR", str(tmp_path / "elsewhere"))
    assert paths.default_data_dir() == tmp_path / "elsewhere"
    assert Settings.from_env().data_dir == tmp_path / "elsewhere"


def test_run_from_another_folder_a_command_reports_on_the_real_data_and_creates_nothing_there(
    mispriced: dict[str, str], pipeline: Pipeline, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "somewhere" / "else"
    # The environment names the data folder and not the audit file: the file is found in it.
    listed = run_from(
        elsewhere, "exceptions", "list", B2B_DATA_DIR=str(pipeline.data_dir), B2B_AUDIT_DB=None
    )
    assert listed.returncode == 0, listed.stderr
    assert mispriced["exception_id"] in listed.stdout and mispriced["number"] in listed.stdout
    assert not (elsewhere / "data").exists()

    # Nothing set at all: the project's data folder, never ./data, and a missing audit file is
    # reported with its path, not created empty.
    bare = run_from(elsewhere, "exceptions", "list", B2B_DATA_DIR=None, B2B_AUDIT_DB=None)
    assert not (elsewhere / "data").exists()
    expected = paths.project_root() / "data" / "audit.duckdb"  # type: ignore[operator]
    if not expected.exists():
        assert bare.returncode == 2
        assert f"no audit trail at {expected}" in bare.stderr
        assert not expected.exists()

    missing = tmp_path / "nowhere" / "audit.duckdb"
    for command in (["exceptions", "list"], ["prices", "--account", "A", "--sku", "B"]):
        result = run_from(elsewhere, *command, B2B_AUDIT_DB=str(missing))
        assert result.returncode == 2, result.stderr
        assert f"no audit trail at {missing}" in result.stderr
        assert not missing.parent.exists()
