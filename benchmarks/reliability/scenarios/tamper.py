"""Tampering with the audit file, each kind on its own copy, caught by ``audit verify``.

A sandbox does real runs first (orders posted and written back, orders queued for a price
difference, an exception approved by the CLI), so the trail holds events, checkpoints, the
exception queue and order postings as the product writes them. A copy of the audit file is kept
part way (a backup); then each kind of tampering is applied to a fresh copy of the final file,
the way someone with the DuckDB CLI and the source code, but not the audit key, could: edit,
delete, insert or reorder an event; the same with every hash recomputed after it; cut the
newest events and checkpoints off; restore the older backup; edit the exception queue (with
and without recomputing its sealed state); delete, edit or add an order posting.
``b2b-pipeline audit verify`` is then run against the copy, with the sandbox's key and anchors
(the copy is the same trail). A kind is **detected** when verify exits 1; the row's
"recovered" column counts detections for this scenario, and the untouched file must verify
(exit 0) first, or every detection would mean nothing.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from random import Random

import duckdb
import pandas as pd

from benchmarks.reliability.plan import Plan
from benchmarks.reliability.report import Row
from benchmarks.reliability.sandbox import Sandbox
from benchmarks.reliability.tally import count, take_snapshot

Tamper = Callable[[duckdb.DuckDBPyConnection], None]


def _middle_seq(connection: duckdb.DuckDBPyConnection) -> int:
    (low, high) = connection.execute("SELECT min(seq), max(seq) FROM audit_events").fetchone()  # type: ignore[misc]
    return int((low + high) // 2)


def recompute_every_hash(connection: duckdb.DuckDBPyConnection) -> None:
    """What someone who read ``hashing.py`` does after an edit: rechain every row and make the
    chain tip and each checkpoint's ``events_hash`` agree. Only the key is out of reach."""
    from b2b_pipeline.connectors.audit.hashing import (
        CANONICAL_CONTENT_SQL,
        GENESIS_HASH,
        chain_hashes,
    )

    rows = connection.execute(
        f"SELECT seq, {CANONICAL_CONTENT_SQL} FROM audit_events ORDER BY seq"
    ).fetchall()
    hashes = chain_hashes(GENESIS_HASH, [content for _, content in rows])
    fixed = pd.DataFrame(
        {"seq": [s for s, _ in rows], "prev_hash": [GENESIS_HASH, *hashes[:-1]], "hash": hashes}
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
    connection.unregister("fixed")


def edit_event(connection: duckdb.DuckDBPyConnection) -> None:
    connection.execute(
        "UPDATE audit_events SET detail = ? WHERE seq = ?",
        [json.dumps({"tampered": True}), _middle_seq(connection)],
    )


def delete_event(connection: duckdb.DuckDBPyConnection) -> None:
    connection.execute("DELETE FROM audit_events WHERE seq = ?", [_middle_seq(connection)])


def insert_event(connection: duckdb.DuckDBPyConnection) -> None:
    seq = _middle_seq(connection)
    connection.execute("UPDATE audit_events SET seq = seq + 1 WHERE seq >= ?", [seq])
    connection.execute(
        "INSERT INTO audit_events SELECT * REPLACE (? AS seq, uuid()::VARCHAR AS event_id, "
        "'P-FORGED' AS entity_key) FROM audit_events WHERE seq = ?",
        [seq, seq - 1],
    )
    connection.execute(
        "UPDATE audit_checkpoints SET events_seq = events_seq + 1 WHERE events_seq >= ?", [seq]
    )
    connection.execute("UPDATE audit_chain_tip SET last_seq = last_seq + 1")


def reorder_events(connection: duckdb.DuckDBPyConnection) -> None:
    seq = _middle_seq(connection)
    connection.execute("UPDATE audit_events SET seq = -1 WHERE seq = ?", [seq])
    connection.execute("UPDATE audit_events SET seq = ? WHERE seq = ?", [seq, seq + 1])
    connection.execute("UPDATE audit_events SET seq = ? WHERE seq = -1", [seq + 1])


def cut_back(connection: duckdb.DuckDBPyConnection) -> None:
    """Delete the newest events and every checkpoint sealing them: a shorter trail whose every
    remaining seal is genuine (only the anchors outside the file can tell)."""
    seq = _middle_seq(connection)
    connection.execute(
        "DELETE FROM audit_checkpoints WHERE checkpoint >= "
        "(SELECT min(checkpoint) FROM audit_checkpoints WHERE events_seq >= ?)",
        [seq],
    )
    (kept,) = connection.execute(  # type: ignore[misc]
        "SELECT coalesce(max(events_seq), 0) FROM audit_checkpoints"
    ).fetchone()
    connection.execute("DELETE FROM audit_events WHERE seq > ?", [kept])
    connection.execute(
        "UPDATE audit_chain_tip SET last_seq = ?, "
        "last_hash = (SELECT hash FROM audit_events WHERE seq = ?)",
        [kept, kept],
    )


def _then_recompute(change: Tamper) -> Tamper:
    def tamper(connection: duckdb.DuckDBPyConnection) -> None:
        change(connection)
        recompute_every_hash(connection)

    return tamper


def resolve_exception(connection: duckdb.DuckDBPyConnection) -> None:
    connection.execute(
        "UPDATE exceptions SET status = 'resolved', resolved_by = 'nobody' WHERE exception_id = "
        "(SELECT min(exception_id) FROM exceptions WHERE status IN ('open', 'approved'))"
    )


def resolve_exception_and_its_state(connection: duckdb.DuckDBPyConnection) -> None:
    from b2b_pipeline.connectors.audit import records

    resolve_exception(connection)
    sealed = records.SEALED_TABLES["exceptions"]
    connection.execute(
        f"""UPDATE audit_record_states AS r SET state_hash = {sealed.state_hash_sql("t")}
            FROM exceptions AS t
            WHERE r.table_name = 'exceptions' AND r.record_key = t.exception_id"""
    )


def delete_exception(connection: duckdb.DuckDBPyConnection) -> None:
    connection.execute(
        "DELETE FROM exceptions WHERE exception_id = (SELECT max(exception_id) FROM exceptions)"
    )


def delete_posting(connection: duckdb.DuckDBPyConnection) -> None:
    connection.execute(
        "DELETE FROM order_postings WHERE portal_order_id = "
        "(SELECT min(portal_order_id) FROM order_postings)"
    )


def edit_posting(connection: duckdb.DuckDBPyConnection) -> None:
    connection.execute(
        "UPDATE order_postings SET erp_gross = erp_gross + 100 WHERE portal_order_id = "
        "(SELECT max(portal_order_id) FROM order_postings)"
    )


def add_posting(connection: duckdb.DuckDBPyConnection) -> None:
    connection.execute(
        "INSERT INTO order_postings SELECT * REPLACE ('P-FORGED' AS portal_order_id) "
        "FROM order_postings LIMIT 1"
    )


TAMPERS: dict[str, Tamper] = {
    "edit an event": edit_event,
    "delete an event": delete_event,
    "insert an event": insert_event,
    "reorder two events": reorder_events,
    "edit an event, recompute every hash": _then_recompute(edit_event),
    "delete an event, recompute every hash": _then_recompute(delete_event),
    "insert an event, recompute every hash": _then_recompute(insert_event),
    "reorder two events, recompute every hash": _then_recompute(reorder_events),
    "cut the newest events and checkpoints off": cut_back,
    "queue: an open exception set to resolved": resolve_exception,
    "queue: resolved, its sealed state recomputed": resolve_exception_and_its_state,
    "queue: an exception deleted": delete_exception,
    "postings: one deleted": delete_posting,
    "postings: one edited": edit_posting,
    "postings: one added": add_posting,
}


def _verify(sandbox: Sandbox, audit_file: Path) -> tuple[int, str]:
    outcome = sandbox.cli("audit", "verify", B2B_AUDIT_DB=str(audit_file))
    return outcome.returncode, outcome.output


def run(plan: Plan) -> list[Row]:
    rng = Random(plan.seed)
    row = Row("tampering with the audit file, caught by audit verify")
    started = time.monotonic()
    undetected: list[str] = []
    with Sandbox("tamper") as sandbox:
        sandbox.prepare()
        ids = sandbox.place_orders(plan.orders // 4, rng)
        ids += sandbox.place_orders(5, rng, types=("quote",))
        # Orders at a price the ERP disagrees with: the queue has open exceptions.
        for _ in range(5):
            body = sandbox.order_body(rng)
            body["lines"][0]["unit_price"] = 0.01
            placed = sandbox.place(body)
            if placed:
                from b2b_pipeline.connectors.sparklayer.purchases import purchase_id

                found = purchase_id(placed)
                ids += [found] if found else []
        sandbox.recover()
        backup = sandbox.root / "audit-backup.duckdb"
        shutil.copyfile(sandbox.audit_path, backup)
        ids += sandbox.place_orders(plan.orders // 4, rng)
        sandbox.recover()
        listed = sandbox.cli("exceptions", "list", "--format", "json")
        queue = json.loads(listed.stdout) if listed.returncode == 0 else []
        prices = [e for e in queue if e.get("reason_code") == "PRICE_MISMATCH"]
        if len(prices) > 1:  # an operator's decision: a state change of the queue is sealed
            decision = ("--accept", "erp-price", "--no-retry", "--by", "reliability")
            sandbox.cli("exceptions", "approve", str(prices[-1]["exception_id"]), *decision)
        control, control_text = _verify(sandbox, sandbox.audit_path)
        if control != 0:
            row.failed = True
            row.notes.append(f"the untouched audit file did not verify: {control_text[-300:]}")

        def restore_backup(path: Path) -> None:
            shutil.copyfile(backup, path)

        kinds: list[tuple[str, Callable[[Path], None]]] = [
            ("restore an older backup of the file", restore_backup),
        ]
        for name, change in TAMPERS.items():

            def apply(path: Path, change: Tamper = change) -> None:
                with duckdb.connect(str(path)) as connection:
                    connection.execute("SET TimeZone = 'UTC'")
                    change(connection)

            kinds.append((name, apply))
        wanted = plan.tamper_kinds
        for name, apply_to in [k for k in kinds if not wanted or k[0].startswith(wanted)]:
            copy = sandbox.root / "tampered.duckdb"
            shutil.copyfile(sandbox.audit_path, copy)
            try:
                apply_to(copy)
            except duckdb.Error as error:
                row.notes.append(f"could not apply '{name}': {error}")
                row.failed = True
                continue
            code, _ = _verify(sandbox, copy)
            row.trials += 1
            if code == 1:
                row.recovered += 1
            else:
                undetected.append(f"{name} (verify exited {code})")
            copy.unlink(missing_ok=True)
        row.counts = count(take_snapshot(sandbox), ids)
        leaks = sandbox.secret_leaks(close_packs=False)
    row.seconds = time.monotonic() - started
    row.notes.append(
        f"'recovered' here counts tamperings detected (verify exit 1): {row.recovered} of "
        f"{row.trials} kinds; the untouched file verified with exit {control}"
    )
    for name in undetected:
        row.notes.append(f"NOT detected: {name}")
    if leaks:
        row.notes.append(f"the client secret appears in: {', '.join(leaks)}")
        row.failed = True
    return [row]
