"""Readers of the audit file keep working while another process writes it (issue 9).

DuckDB lets one process at a time open a database file for writing, and while it has it open
no other process can read it either. Another process here holds a write transaction on the
audit file for a few seconds (what a long pipeline write looks like from outside); the asset
checks, ``b2b-pipeline exceptions list`` and ``b2b-pipeline reconcile`` started meanwhile wait
for it, boundedly, and then complete with the right answer, instead of failing or hanging.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from click.testing import CliRunner

from b2b_pipeline.cli.main import cli
from b2b_pipeline.connectors.audit.connection import DEFAULT_LOCK_WAIT_SECONDS
from b2b_pipeline.connectors.sparklayer.purchases import visible_id
from b2b_pipeline_tests.harness import Pipeline
from b2b_pipeline_tests.test_month_end import MONTH, TRADE, place, ready_portal

HOLD_SECONDS = 3.0

# A process that opens the audit file, starts a write transaction, writes, and holds it.
_HOLDER = """
import sys, time, duckdb
connection = duckdb.connect(sys.argv[1])
connection.begin()
connection.execute(
    "INSERT INTO audit_schema (name, version) VALUES ('a writer holding the file', 'test')"
)
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
connection.rollback()
connection.close()
"""

AUDIT_READING_CHECKS = [
    dg.AssetCheckKey(dg.AssetKey("erp_sales_orders"), "every_live_order_posted_or_queued"),
    dg.AssetCheckKey(dg.AssetKey("erp_sales_orders"), "erp_totals_match_portal"),
]


@contextmanager
def another_process_writing(path: Path, seconds: float = HOLD_SECONDS) -> Iterator[float]:
    """Yields the moment the other process holds the file; waits for it to let go after."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path), str(seconds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "holding", holder.stderr.read()
        yield time.monotonic()
    finally:
        holder.wait(timeout=60)
    assert holder.returncode == 0, holder.stderr.read() if holder.stderr else ""


def waited(started: float) -> float:
    return time.monotonic() - started


def test_checks_exceptions_list_and_reconcile_wait_for_a_writer_and_then_answer(
    pipeline: Pipeline,
) -> None:
    ready_portal(pipeline)
    posted, _ = place(pipeline, TRADE, f"{MONTH}-06T08:00:00Z")
    held, _ = place(pipeline, TRADE, f"{MONTH}-07T08:00:00Z", unit_price=1.00)
    pipeline.run("order_intake_job")
    held_number = visible_id(pipeline.portal.get_purchase(held))
    (exception_id,) = pipeline.audit.exceptions(status="open")["exception_id"]
    audit_file = pipeline.audit.path

    # The asset checks that read the audit file, run by Dagster on the project's definitions.
    checks_job = dg.define_asset_job(
        "audit_reading_checks", selection=dg.AssetSelection.checks(*AUDIT_READING_CHECKS)
    )
    definitions = dg.Definitions.merge(pipeline.definitions(), dg.Definitions(jobs=[checks_job]))
    job = definitions.resolve_job_def("audit_reading_checks")
    with another_process_writing(audit_file) as started:
        result = job.execute_in_process(
            instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
        )
        took = waited(started)
    assert result.success
    evaluations = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert evaluations == {key.name: True for key in AUDIT_READING_CHECKS}
    assert HOLD_SECONDS * 0.5 < took < DEFAULT_LOCK_WAIT_SECONDS

    runner = CliRunner()
    with another_process_writing(audit_file) as started:
        listed = runner.invoke(cli, ["exceptions", "list", "--format", "json"])
        took = waited(started)
    assert listed.exit_code == 0, listed.output
    assert HOLD_SECONDS * 0.5 < took < DEFAULT_LOCK_WAIT_SECONDS
    assert '"exception_id":"' + exception_id in listed.stdout.replace(" ", "")
    assert held_number in listed.stdout

    with another_process_writing(audit_file) as started:
        reconciled = runner.invoke(cli, ["reconcile", "--month", MONTH, "--format", "json"])
        took = waited(started)
    # One order matched, one held in the queue with its reason: nothing unexplained.
    assert reconciled.exit_code == 0, reconciled.output
    assert HOLD_SECONDS * 0.5 < took < DEFAULT_LOCK_WAIT_SECONDS
    lines = pipeline.audit.reconciliation_lines(MONTH).set_index("portal_order_id")["outcome"]
    assert lines.to_dict() == {posted: "MATCHED", held: "EXCEPTION_OPEN"}
    # The writer's transaction was rolled back; the trail the readers waited for is intact.
    assert pipeline.audit.verify().ok
