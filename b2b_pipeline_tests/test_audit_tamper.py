"""Tampering with the audit file by someone who has it but not the key, on a real DuckDB file:
recomputing every hash after an edit, cutting the trail back, editing the exception queue or
the postings in SQL. Each is caught by ``verify()``, which names the table and the row; an
untouched trail written by many runs verifies, and the key never shows."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from b2b_pipeline.connectors.audit import records
from b2b_pipeline.connectors.audit.anchors import (
    AnchorReading,
    ChainHead,
    FileAnchorSink,
    default_anchor_path,
)
from b2b_pipeline.connectors.audit.checkpoints import SealRefused
from b2b_pipeline.connectors.audit.hashing import CANONICAL_CONTENT_SQL, GENESIS_HASH, chain_hashes
from b2b_pipeline.connectors.audit.keys import AuditKey, AuditKeyError, key_file_path
from b2b_pipeline.connectors.audit.store import AuditStore
from b2b_pipeline.domain.exceptions import exception_frame

KEY_TEXT = "k" * 20 + "-a-production-key-from-a-vault-0123456789"


def order_events(count: int, *, run_id: str = "run-1", first: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run_id": run_id,
            "entity": "order",
            "entity_key": [f"P{n:05d}" for n in range(first, first + count)],
            "action": "posted",
            "category": None,
            "detail": [json.dumps({"gross": f"{n}.50"}) for n in range(first, first + count)],
        }
    )


def price_mismatch(order_id: str) -> dict:
    return {
        "entity": "order",
        "entity_key": order_id,
        "account_code": "ACME01",
        "reason_code": "PRICE_MISMATCH",
        "message": "Portal total 120.00 GBP, ERP 118.00 GBP",
        "payload": json.dumps({"id": order_id}),
    }


def postings(*order_ids: str, run: str = "run-1") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "portal_order_id": list(order_ids),
            "erp_order_no": [f"10{n}" for n in range(len(order_ids))],
            "account_code": "ACME01",
            "currency": "GBP",
            "portal_gross": 120.0,
            "erp_gross": 120.0,
            "payment_method": "pay_on_account",
            "erp_status": "TO_BE_INVOICED",
        }
    )


def tamper(store: AuditStore, *statements: str) -> None:
    """Change the file behind the store's back, as someone with the DuckDB CLI could."""
    with duckdb.connect(str(store.path)) as connection:
        connection.execute("SET TimeZone = 'UTC'")
        for statement in statements:
            connection.execute(statement)


def recompute_every_hash(store: AuditStore) -> None:
    """What someone who read hashing.py does after an edit: rechain every row, and make the
    chain tip and every checkpoint's events_hash agree. Only the key is out of reach."""
    with duckdb.connect(str(store.path)) as connection:
        connection.execute("SET TimeZone = 'UTC'")
        rows = connection.execute(
            f"SELECT seq, {CANONICAL_CONTENT_SQL} FROM audit_events ORDER BY seq"
        ).fetchall()
        hashes = chain_hashes(GENESIS_HASH, [content for _, content in rows])
        fixed = pd.DataFrame(
            {
                "seq": [seq for seq, _ in rows],
                "prev_hash": [GENESIS_HASH, *hashes[:-1]],
                "hash": hashes,
            }
        )
        connection.register("fixed", fixed)
        connection.execute(
            "UPDATE audit_events AS e SET prev_hash = f.prev_hash, hash = f.hash "
            "FROM fixed AS f WHERE e.seq = f.seq"
        )
        connection.execute(
            "UPDATE audit_chain_tip SET last_seq = (SELECT max(seq) FROM fixed), "
            "last_hash = (SELECT arg_max(hash, seq) FROM fixed)"
        )
        connection.execute(
            "UPDATE audit_checkpoints AS c SET events_hash = f.hash FROM fixed AS f "
            "WHERE f.seq = c.events_seq"
        )


def problems_of(store: AuditStore) -> list[str]:
    result = store.verify()
    assert not result.ok
    return result.problems


@pytest.fixture
def trail(audit: AuditStore) -> AuditStore:
    """Three runs: events in three writes, an exception filed then approved, two postings."""
    audit.append_events(order_events(10))
    filed = audit.open_exceptions(exception_frame([price_mismatch("P9")]), run_id="run-1")
    audit.record_order_postings(postings("P1", "P2"), run_id="run-1")
    audit.append_events(order_events(10, first=10, run_id="run-2"))
    audit.set_exception_status(filed["exception_id"].iloc[0], "approved", by="finance@acme")
    audit.append_events(order_events(10, first=20, run_id="run-3"))
    assert audit.verify().ok
    return audit


# -- an untouched trail ----------------------------------------------------------------------------


def test_an_untouched_trail_written_by_many_runs_and_stores_verifies(audit: AuditStore) -> None:
    for run in range(12):
        store = AuditStore(audit.path)  # every run opens its own store, as the resources do
        run_id = f"run-{run}"
        store.append_events(order_events(25, run_id=run_id, first=run * 25))
        filed = store.open_exceptions(
            exception_frame([price_mismatch(f"Q{run}"), price_mismatch(f"Q{run - 1}")]),
            run_id=run_id,
        )
        store.record_order_postings(postings(f"R{run}", f"R{run - 1}"), run_id=run_id)
        if run % 3 == 0:
            store.set_exception_status(filed["exception_id"].iloc[0], "ignored", by="ops@acme")
        if run % 4 == 1:
            store.resolve_exceptions_for("order", [f"Q{run - 1}"], run_id=run_id)
        store.write_reconciliation_lines(
            "2025-03",
            pd.DataFrame({"portal_order_id": [f"R{run}"], "outcome": ["MATCHED"]}),
            run_id=run_id,
        )

    result = AuditStore(audit.path).verify()

    assert (result.ok, result.complete, result.problems) == (True, True, [])
    assert result.checked == len(audit.events())
    assert [check.name for check in result.checks] == [
        "events chain (audit_events)",
        "keyed seals (audit_checkpoints)",
        "exception queue and order postings",
        "anchors outside the file",
    ]
    exceptions, postings_count = len(audit.exceptions()), len(audit.order_postings())
    assert (
        f"{exceptions} exceptions and {postings_count} order postings" in result.checks[2].summary
    )
    assert "compared with the file" in result.checks[3].summary


def test_the_key_file_is_created_outside_the_audit_file_readable_by_its_owner_only(
    audit: AuditStore,
) -> None:
    audit.append_events(order_events(1))

    key_file = key_file_path()
    assert key_file.parent != audit.path.parent  # the fixture keeps them apart
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_text().strip()) == 64
    assert default_anchor_path().exists()


# -- the events chain, rewritten without the key ---------------------------------------------------


def test_an_edited_event_with_every_hash_recomputed_is_caught_by_the_seals(
    trail: AuditStore,
) -> None:
    tamper(trail, """UPDATE audit_events SET detail = '{"gross": "0.00"}' WHERE seq = 4""")
    recompute_every_hash(trail)

    problems = problems_of(trail)

    # The chain itself is whole again: only the keyed seals can tell.
    assert not any(p.startswith("audit_events") for p in problems), problems
    assert any(
        p.startswith("audit_checkpoints: checkpoint 1 (events up to seq 10")
        and "does not carry a valid seal" in p
        for p in problems
    ), problems


def test_a_trail_stored_out_of_seq_order_verifies_and_its_tampering_is_still_caught(
    trail: AuditStore,
) -> None:
    # A large append stores its rows in whatever order DuckDB's threads wrote them; the same
    # rows, stored backwards, are the same trail.
    tamper(
        trail,
        "CREATE TEMP TABLE stored AS SELECT * FROM audit_events ORDER BY seq DESC",
        "DELETE FROM audit_events",
        "INSERT INTO audit_events SELECT * FROM stored",
    )
    assert trail.query("SELECT seq FROM audit_events LIMIT 1")["seq"].iloc[0] != 1
    assert trail.verify().ok

    tamper(trail, "DELETE FROM audit_events WHERE seq = 7")

    assert any("row seq 7 is missing: deleted from the trail" in p for p in problems_of(trail))


@pytest.mark.parametrize(
    "statements",
    [
        pytest.param(
            [
                "UPDATE audit_events SET seq = -1 WHERE seq = 3",
                "UPDATE audit_events SET seq = 3 WHERE seq = 4",
                "UPDATE audit_events SET seq = 4 WHERE seq = -1",
            ],
            id="reordered",
        ),
        pytest.param(
            [
                "UPDATE audit_events SET seq = seq + 1 WHERE seq >= 4",
                "INSERT INTO audit_events SELECT * REPLACE (4 AS seq, uuid()::VARCHAR AS "
                "event_id, 'P99999' AS entity_key) FROM audit_events WHERE seq = 3",
                "UPDATE audit_checkpoints SET events_seq = events_seq + 1 WHERE events_seq >= 4",
            ],
            id="inserted",
        ),
    ],
)
def test_rows_inserted_or_reordered_with_every_hash_recomputed_are_caught(
    trail: AuditStore, statements: list[str]
) -> None:
    tamper(trail, *statements)
    recompute_every_hash(trail)

    problems = problems_of(trail)

    assert not any(p.startswith("audit_events") for p in problems), problems
    assert any("does not carry a valid seal" in p for p in problems), problems


def test_resealing_with_a_guessed_key_is_caught(trail: AuditStore) -> None:
    tamper(trail, """UPDATE audit_events SET detail = '{"gross": "0.00"}' WHERE seq = 4""")
    recompute_every_hash(trail)
    forged = AuditKey(b"x" * 64, "a guess")
    with duckdb.connect(str(trail.path)) as connection:
        connection.execute("UPDATE audit_checkpoints SET seal = 'f' || substr(seal, 2)")

    problems = problems_of(trail)

    assert sum("does not carry a valid seal" in p for p in problems) >= 1
    assert forged.key_id not in " ".join(problems)


# -- cutting the trail back ------------------------------------------------------------------------


def test_deleting_the_newest_events_and_their_checkpoints_is_caught_by_the_anchor(
    trail: AuditStore,
) -> None:
    newest, before = trail.query(
        "SELECT checkpoint, events_seq, records_seq FROM audit_checkpoints "
        "ORDER BY checkpoint DESC LIMIT 2"
    ).itertuples(index=False)
    # A self-consistent rollback to the checkpoint before: every remaining seal is genuine.
    tamper(
        trail,
        f"DELETE FROM audit_events WHERE seq > {before.events_seq}",
        f"DELETE FROM audit_record_states WHERE seq > {before.records_seq}",
        f"DELETE FROM audit_checkpoints WHERE checkpoint > {before.checkpoint}",
        f"UPDATE audit_chain_tip SET last_seq = {before.events_seq}, "
        f"last_hash = (SELECT hash FROM audit_events WHERE seq = {before.events_seq})",
    )

    problems = problems_of(trail)

    assert len(problems) == 1, problems
    assert problems[0].startswith(
        f"anchors: the trail was cut back: the anchor file {default_anchor_path()} records "
        f"checkpoint {newest.checkpoint} (events up to seq {newest.events_seq}"
    )
    assert (
        f"but the file ends at checkpoint {before.checkpoint} (events up to seq "
        f"{before.events_seq})" in problems[0]
    )


def test_deleting_every_checkpoint_is_caught_and_the_pipeline_will_not_seal_over_it(
    trail: AuditStore,
) -> None:
    written = len(trail.events())
    tamper(trail, "DELETE FROM audit_checkpoints", "DELETE FROM audit_trail")

    problems = problems_of(trail)
    with pytest.raises(SealRefused, match="lost its checkpoints although anchors say"):
        trail.append_events(order_events(1, first=99))

    assert any(p.startswith("audit_checkpoints: no keyed checkpoint covers") for p in problems)
    assert any("the file holds no checkpoint: they were deleted" in p for p in problems)
    assert len(trail.events()) == written  # nothing was written


def test_a_trail_without_its_anchors_is_not_reported_intact(trail: AuditStore) -> None:
    default_anchor_path().unlink()

    problems = problems_of(trail)

    assert problems == [
        f"anchors: the anchor file {default_anchor_path()} holds no head of this trail (id "
        f"{trail.chain_head().trail_id}): the end of the trail cannot be proven, and a rollback "
        "or truncation would go unnoticed"
    ]


def test_the_newest_anchor_is_found_at_the_end_of_a_large_shared_anchor_file(
    tmp_path: Path,
) -> None:
    sink = FileAnchorSink(tmp_path / "audit.anchors")
    sealed_at = datetime(2025, 3, 3, tzinfo=UTC)

    def head(trail: str, checkpoint: int) -> ChainHead:
        return ChainHead(trail, checkpoint, checkpoint * 10, checkpoint, "ab" * 32, sealed_at)

    # Years of anchors of two trails, then the newest two of "mine" written out of order (two
    # processes anchoring at once), a damaged line, and a line still being written.
    for checkpoint in range(1, 3000):
        sink.write(head("mine" if checkpoint % 3 else "other", checkpoint))
    sink.write(head("mine", 3001))
    sink.write(head("mine", 3000))
    with sink.path.open("ab") as file:
        file.write(b"not json\n")
        damaged_at = file.tell() - len(b"not json\n")
        file.write(b'{"trail_id": "mine", "checkp')

    reading = sink.heads("mine")

    assert sink.path.stat().st_size > 4 * 65536
    assert max(h.checkpoint for h in reading.heads) == 3001
    assert len(reading.heads) < 1000  # only the end of the file was read
    assert reading.unreadable_at == [damaged_at]
    assert sink.heads("nobody").heads == []


# -- the exception queue and the postings ----------------------------------------------------------


def test_an_exception_moved_from_approved_to_resolved_in_sql_is_caught(trail: AuditStore) -> None:
    exception_id = trail.exceptions()["exception_id"].iloc[0]
    tamper(
        trail, f"UPDATE exceptions SET status = 'resolved' WHERE exception_id = '{exception_id}'"
    )

    assert problems_of(trail) == [
        f"exceptions: exception {exception_id} was changed outside the pipeline: it no longer "
        f"matches its state sealed at record seq 4 (its status is now 'resolved')"
    ]


def test_an_exception_edited_with_its_ledger_state_recomputed_is_caught(trail: AuditStore) -> None:
    sealed = records.SEALED_TABLES["exceptions"]
    tamper(
        trail,
        "UPDATE exceptions SET status = 'resolved'",
        f"""UPDATE audit_record_states AS r SET state_hash = {sealed.state_hash_sql("t")}
            FROM exceptions AS t WHERE r.record_key = t.exception_id""",
    )

    problems = problems_of(trail)

    assert not any(p.startswith("exceptions:") for p in problems), problems
    assert any(
        p.startswith("audit_record_states: the record states sealed by checkpoint")
        and "were changed after sealing" in p
        for p in problems
    ), problems


def test_a_deleted_order_posting_is_caught(trail: AuditStore) -> None:
    tamper(trail, "DELETE FROM order_postings WHERE portal_order_id = 'P2'")

    problems = problems_of(trail)

    assert len(problems) == 1
    assert problems[0].startswith(
        "order_postings: order posting for portal order P2 is missing: deleted outside the pipeline"
    )


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        (
            "UPDATE order_postings SET erp_gross = 1.00 WHERE portal_order_id = 'P1'",
            "order_postings: order posting for portal order P1 was changed outside the pipeline",
        ),
        (
            "INSERT INTO order_postings SELECT * REPLACE ('P7' AS portal_order_id) "
            "FROM order_postings WHERE portal_order_id = 'P1'",
            "order_postings: order posting for portal order P7 has no sealed state: it was added "
            "outside the pipeline",
        ),
        (
            "INSERT INTO order_postings SELECT * FROM order_postings WHERE portal_order_id = 'P1'",
            "order_postings: order posting for portal order P1 appears 2 times",
        ),
        (
            "DELETE FROM audit_record_states WHERE seq = (SELECT max(seq) FROM "
            "audit_record_states WHERE table_name = 'order_postings')",
            "audit_record_states: the record states sealed by checkpoint",
        ),
    ],
)
def test_postings_altered_added_or_unsealed_in_sql_are_caught(
    trail: AuditStore, statement: str, expected: str
) -> None:
    tamper(trail, statement)

    assert any(p.startswith(expected) for p in problems_of(trail)), problems_of(trail)


def test_an_order_posted_again_by_the_pipeline_keeps_the_trail_intact(trail: AuditStore) -> None:
    trail.record_order_postings(postings("P1").assign(erp_status="INVOICED"), run_id="run-4")

    assert trail.verify().ok


# -- the key ---------------------------------------------------------------------------------------


def test_without_the_key_verify_says_it_could_not_check_the_seals(
    trail: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("B2B_AUDIT_KEY_FILE", str(key_file_path().parent / "elsewhere.key"))

    result = trail.verify()

    assert (result.ok, result.complete, result.problems) == (False, False, [])
    assert "the seals themselves were NOT checked: no audit key" in result.checks[1].summary
    with pytest.raises(AuditKeyError, match="no audit key is available"):
        trail.append_events(order_events(1, first=99))


def test_a_different_key_is_named_by_its_id_and_refused_for_writing(
    trail: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("B2B_AUDIT_KEY", KEY_TEXT)
    other = AuditKey(KEY_TEXT.encode(), "B2B_AUDIT_KEY")

    problems = problems_of(trail)
    with pytest.raises(AuditKeyError, match=f"has id {other.key_id}") as refused:
        trail.append_events(order_events(1, first=99))

    assert any(f"the key given (B2B_AUDIT_KEY) has id {other.key_id}" in p for p in problems)
    assert KEY_TEXT not in str(refused.value)


def test_the_key_appears_in_no_audit_row_anchor_or_report(
    audit: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("B2B_AUDIT_KEY", KEY_TEXT)
    audit.append_events(order_events(3))
    audit.open_exceptions(exception_frame([price_mismatch("P1")]), run_id="run-1")
    tamper(audit, "UPDATE exceptions SET status = 'ignored'")

    result = audit.verify()
    export = audit.export_parquet(audit.path.parent / "export")

    assert not key_file_path().exists()  # the variable wins: no file was made
    shown = " ".join(result.problems) + " ".join(c.summary for c in result.checks)
    assert KEY_TEXT not in shown
    assert KEY_TEXT.encode() not in default_anchor_path().read_bytes()
    assert all(KEY_TEXT.encode() not in path.read_bytes() for path in export)
    assert KEY_TEXT.encode() not in audit.path.read_bytes()
    assert KEY_TEXT not in repr(AuditKey(KEY_TEXT.encode(), "B2B_AUDIT_KEY"))


def test_a_short_key_is_refused_in_one_line_without_showing_it(
    audit: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("B2B_AUDIT_KEY", "short-secret")

    with pytest.raises(AuditKeyError) as refused:
        audit.append_events(order_events(1))

    assert "needs at least 32" in str(refused.value)
    assert "short-secret" not in str(refused.value)


# -- files written before sealing ------------------------------------------------------------------


def test_a_trail_written_before_sealing_is_sealed_whole_at_its_next_write(
    tmp_path: Path,
) -> None:
    # A file as the previous release left it: events, an exception and a posting, no seals.
    legacy = AuditStore(tmp_path / "legacy.duckdb", anchors=[])
    legacy.append_events(order_events(3))
    legacy.open_exceptions(exception_frame([price_mismatch("P1")]), run_id="run-1")
    legacy.record_order_postings(postings("P1"), run_id="run-1")
    tamper(
        legacy,
        "DELETE FROM audit_checkpoints",
        "DELETE FROM audit_record_states",
        "DELETE FROM audit_trail",
    )
    assert any("no keyed checkpoint covers" in p for p in problems_of(legacy))

    upgraded = AuditStore(legacy.path)  # the default anchors, which know nothing of this file
    upgraded.append_events(order_events(1, first=3))

    result = upgraded.verify()
    assert result.ok, result.problems
    assert "1 exceptions and 1 order postings compared" in result.checks[2].summary


class FullDiskSink:
    """An anchor sink whose storage is full: every write fails."""

    description = "a full disk"

    def write(self, head: object) -> None:
        raise OSError(28, "No space left on device")

    def heads(self, trail_id: str | None, audit_file: str | None = None) -> AnchorReading:
        return AnchorReading()


def test_an_anchor_sink_that_fails_does_not_fail_the_write_and_verify_says_what_is_unanchored(
    audit: AuditStore, caplog: pytest.LogCaptureFixture
) -> None:
    audit.append_events(order_events(2))

    AuditStore(audit.path, anchors=[FullDiskSink()]).append_events(order_events(2, first=2))

    assert "could not anchor audit checkpoint 2 in a full disk (OSError" in caplog.text
    assert len(audit.events()) == 4
    result = audit.verify()
    assert result.ok, result.problems
    assert "the file's 1 newest checkpoint is not anchored yet" in result.checks[3].summary
