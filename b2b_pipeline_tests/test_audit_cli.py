"""``b2b-pipeline audit verify`` and ``audit head`` on a real audit file: what a person reads,
and the exit status a script relies on (0 intact, 1 tampered, 2 could not check)."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from click.testing import CliRunner

from b2b_pipeline.cli.main import cli
from b2b_pipeline.connectors.audit.keys import key_file_path
from b2b_pipeline.connectors.audit.store import AuditStore
from b2b_pipeline.domain.exceptions import exception_frame

KEY_TEXT = "cli-test-key-" + "0123456789abcdef" * 3


@pytest.fixture
def trail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AuditStore:
    path = tmp_path / "audit.duckdb"
    monkeypatch.setenv("B2B_AUDIT_DB", str(path))
    store = AuditStore(path)
    store.append_events(
        pd.DataFrame(
            {"entity": "order", "entity_key": ["P1", "P2", "P3"], "action": "posted"}
        ).assign(run_id="run-1", detail="{}")
    )
    store.open_exceptions(
        exception_frame(
            [
                {
                    "entity": "order",
                    "entity_key": "P4",
                    "account_code": "ACME01",
                    "reason_code": "PRICE_MISMATCH",
                    "message": "Portal total 120.00 GBP, ERP 118.00 GBP",
                }
            ]
        ),
        run_id="run-1",
    )
    return store


def invoke(*args: str):
    return CliRunner().invoke(cli, ["audit", *args])


def test_an_intact_trail_says_what_was_checked_and_exits_0(trail: AuditStore) -> None:
    run = invoke("verify")

    assert run.exit_code == 0, run.output
    lines = run.output.splitlines()
    assert lines[0] == "Audit trail intact: 4 events checked."
    assert lines[1] == "What was checked:"
    assert lines[2].startswith("  ok      events chain (audit_events): 4 events, seq 1 to 4")
    assert lines[3].startswith("  ok      keyed seals (audit_checkpoints): 2 checkpoints")
    assert lines[4].startswith("  ok      exception queue and order postings: 1 exceptions")
    assert lines[5].startswith(
        "  ok      anchors outside the file: the newest anchor of this trail"
    )
    report = json.loads(invoke("verify", "--format", "json").output)
    assert (report["ok"], report["checked"], report["problems"]) == (True, 4, [])
    assert [check["passed"] for check in report["checks"]] == [True] * 4


def test_an_exception_edited_in_sql_exits_1_naming_the_table_and_the_row(
    trail: AuditStore,
) -> None:
    with duckdb.connect(str(trail.path)) as connection:
        connection.execute("UPDATE exceptions SET status = 'resolved'")

    run = invoke("verify")

    assert run.exit_code == 1
    assert run.output.startswith("Audit trail TAMPERED: 1 problem(s) in 4 events checked")
    assert "  - exceptions: exception EX-000001 was changed outside the pipeline" in run.output
    assert "  FAILED  exception queue and order postings" in run.output
    assert "  ok      events chain" in run.output


def test_without_the_key_verify_exits_2_and_never_says_intact(
    trail: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file_path().rename(key_file_path().with_suffix(".moved"))

    run = invoke("verify")

    assert run.exit_code == 2
    assert "intact" not in run.output
    assert run.output.startswith("Audit trail NOT VERIFIED")
    assert "  NOT RUN keyed seals (audit_checkpoints)" in run.output


def test_a_bad_key_is_one_line_exit_2_and_the_key_is_never_printed(
    trail: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("B2B_AUDIT_KEY", KEY_TEXT)
    wrong = invoke("verify")
    monkeypatch.setenv("B2B_AUDIT_KEY", "too-short")
    short = invoke("verify")

    assert wrong.exit_code == 1
    assert "sealed with key id" in wrong.output
    assert short.exit_code == 2
    assert len(short.output.strip().splitlines()) == 1
    assert "needs at least 32" in short.output
    for run in (wrong, short):
        assert KEY_TEXT not in run.output and "too-short" not in run.output
        assert "Traceback" not in run.output


def test_head_prints_the_newest_sealed_checkpoint(trail: AuditStore) -> None:
    run = invoke("head", "--format", "json")

    assert run.exit_code == 0, run.output
    head = json.loads(run.output)
    assert (head["checkpoint"], head["events_seq"], head["records_seq"]) == (2, 4, 1)
    assert head["seal"] == trail.chain_head().seal


def test_a_missing_audit_file_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("B2B_AUDIT_DB", str(tmp_path / "nowhere.duckdb"))

    run = invoke("verify")

    assert run.exit_code == 2
    assert "no audit trail at" in run.output
