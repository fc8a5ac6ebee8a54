"""``audit verify``: every check the audit file allows, each reported in plain words.

1. **Events chain** (``audit_events``): every row's hash recomputed from its content and
   ``prev_hash``, every link to the row before, seq gapless from 1, the last row against
   ``audit_chain_tip``. Hashing runs in Python over Arrow batches streamed from DuckDB
   (hashlib uses the CPU's SHA extensions; DuckDB's ``sha256`` needed twice the CPU here) and
   compares whole batches of digests at once; links are checked in the same pass when the
   rows are stored in seq order (they are, as the store writes them), else by a join in SQL.
   Only a trail that fails is re-checked row by row in SQL, to name each row.
2. **Keyed seals** (``audit_checkpoints``, ``checkpoints.py``): checkpoints gapless, each
   pointing at a real event and ledger range, the last one at the end of both, and each seal
   recomputed with the key. Without the key this check cannot run, and the result says so
   (``complete`` is False): the CLI exits 2, never "intact".
3. **Exceptions and postings** (``records.py``): the ledger gapless and each checkpoint's
   digest of it recomputed; each row of ``exceptions`` and ``order_postings`` compared with its
   last sealed state.
4. **Anchors** (``anchors.py``): every head anchored outside the file must still be in the file,
   with the same seal; a file that ends before its newest anchor was cut back.

What passing proves, and what it does not, is in ``docs/runbook.md`` (and this project's
``checkpoints.py``): no sealed row was changed, added, removed or reordered by anyone without
the key, and the file was not cut back behind its last anchor. It cannot prove that an event
was written at all, nor detect a rewrite by someone holding both the key and the anchors.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from b2b_pipeline.connectors.audit import records
from b2b_pipeline.connectors.audit.anchors import AnchorReading
from b2b_pipeline.connectors.audit.checkpoints import (
    CHECKPOINT_COLUMNS,
    GENESIS_SEAL,
    Checkpoint,
    seal_message,
    trail_id_in,
)
from b2b_pipeline.connectors.audit.hashing import (
    CANONICAL_CONTENT_SQL,
    GENESIS_HASH,
    HASH_HEX_LENGTH,
    HASH_SQL,
)
from b2b_pipeline.connectors.audit.keys import AuditKey

# A trail rewritten wholesale would otherwise produce a million lines; the first ones locate it.
MAX_REPORTED_PROBLEMS = 200
_BATCH_ROWS = 131_072
_HEXDIGEST = type(hashlib.sha256()).hexdigest


@dataclass(frozen=True)
class Check:
    """One check: what it covered, in words, and what it found."""

    name: str
    summary: str
    problems: list[str] = field(default_factory=list)
    complete: bool = True


@dataclass(frozen=True)
class VerifyResult:
    """``ok``: every check ran and none found a problem. ``checked``: events checked.
    ``complete``: False when a check could not run (no key), which is not proof."""

    ok: bool
    checked: int
    problems: list[str] = field(default_factory=list)
    checks: tuple[Check, ...] = ()
    complete: bool = True


@dataclass(frozen=True)
class AnchorsRead:
    """What the anchor sinks hold for one trail, read before the file (see verify_trail)."""

    trail_id: str | None
    readings: list[tuple[str, AnchorReading]]


def read_trail_id(connection: duckdb.DuckDBPyConnection) -> str | None:
    return trail_id_in(connection)


def verify_trail(
    connection: duckdb.DuckDBPyConnection, *, key: AuditKey | None, anchors: AnchorsRead
) -> VerifyResult:
    """Run every check on an open (read) connection.

    ``anchors`` must be read *before* this connection opened: a write committed in between is
    then at most ahead of its anchor, never behind it, so it cannot look like a rollback.
    """
    events_check, events = _check_events(connection)
    checkpoints = _load_checkpoints(connection)
    ledger_seqs, ledger_lines = _load_ledger(connection)
    trail_id = trail_id_in(connection)
    checks = [
        events_check,
        _check_seals(connection, checkpoints, events, ledger_seqs, trail_id, key),
        _check_records(connection, checkpoints, ledger_seqs, ledger_lines),
        _check_anchors(checkpoints, trail_id, anchors),
    ]
    problems = [problem for check in checks for problem in check.problems]
    complete = all(check.complete for check in checks)
    return VerifyResult(
        ok=not problems and complete,
        checked=events.count,
        problems=problems,
        checks=tuple(checks),
        complete=complete,
    )


# -- 1. the events chain ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Events:
    count: int
    last_seq: int | None
    last_hash: str | None


_CHAIN_SQL = f"""
WITH chain AS (
    SELECT seq,
           hash,
           prev_hash,
           hash IS DISTINCT FROM {HASH_SQL} AS changed,
           lag(seq) OVER by_seq AS previous_seq,
           lag(hash) OVER by_seq AS previous_hash
    FROM audit_events
    WINDOW by_seq AS (ORDER BY seq, hash)
),
problems AS (
    SELECT seq, previous_seq, changed,
           seq = previous_seq AS duplicate,
           seq > coalesce(previous_seq, 0) + 1 AS gap,
           prev_hash IS DISTINCT FROM coalesce(previous_hash, '{GENESIS_HASH}') AS broken_link
    FROM chain
)
SELECT seq, previous_seq, changed, duplicate, gap, broken_link,
       count(*) OVER () AS problem_rows
FROM problems
WHERE changed OR duplicate OR gap OR broken_link
ORDER BY seq
LIMIT {MAX_REPORTED_PROBLEMS}
"""


def _seq_range(first: int, last: int) -> str:
    return f"row seq {first} is" if first == last else f"rows seq {first} to {last} are"


def _row_problems(row: tuple) -> list[str]:
    seq, previous_seq, changed, duplicate, gap, broken_link, _ = row
    problems: list[str] = []
    if duplicate:
        problems.append(
            f"audit_events: seq {seq} appears more than once: a row was inserted into the trail"
        )
    if gap:
        first = 1 if previous_seq is None else previous_seq + 1
        problems.append(
            f"audit_events: {_seq_range(first, seq - 1)} missing: deleted from the trail"
        )
    if changed:
        problems.append(
            f"audit_events: row seq {seq} was changed after it was written: its content no "
            "longer matches its hash"
        )
    elif broken_link and not gap and not duplicate:
        problems.append(
            f"audit_events: row seq {seq} does not follow row seq {previous_seq}: its "
            "prev_hash is not that row's hash (a row was replaced, inserted or reordered)"
        )
    return problems


def _hex_values(column: pa.Array) -> bytes | None:
    """The values of a string column laid end to end, if each is a 64-character digest."""
    if column.null_count:
        return None
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32)[
        column.offset : column.offset + len(column) + 1
    ]
    if not (np.diff(offsets) == HASH_HEX_LENGTH).all():
        return None
    return memoryview(column.buffers()[2])[offsets[0] : offsets[-1]].tobytes()


def _hashes_and_order(connection: duckdb.DuckDBPyConnection) -> tuple[bool, bool]:
    """One streaming pass over the trail as stored: (every row's hash matches its content and
    its prev_hash; the rows are stored as seq 1, 2, 3 ... each linked to the one before).

    Digests are compared a batch at a time, never row by row. A large append stores its rows
    in any order (events.py), so the second answer is often False; the links are then checked
    in SQL instead (:func:`_links_hold`)."""
    reader = connection.sql(
        f"SELECT seq, prev_hash, hash, prev_hash || {CANONICAL_CONTENT_SQL} AS chained "
        "FROM audit_events"
    ).to_arrow_reader(_BATCH_ROWS)
    ordered, expected_seq, previous = True, 1, GENESIS_HASH.encode()
    sha256 = hashlib.sha256
    for batch in reader:
        if batch.num_rows == 0:
            continue
        stored = _hex_values(batch.column(2))
        stored_prev = _hex_values(batch.column(1))
        if stored is None or stored_prev is None:
            return False, False
        contents = batch.column(3).cast(pa.binary()).to_pylist()
        if "".join(map(_HEXDIGEST, map(sha256, contents))).encode() != stored:
            return False, False
        if ordered:
            seq = batch.column(0)
            seqs = seq.to_numpy(zero_copy_only=False)
            ordered = (
                seq.null_count == 0
                and seqs[0] == expected_seq
                and bool((np.diff(seqs) == 1).all())
                and stored_prev == previous + stored[:-HASH_HEX_LENGTH]
            )
            previous = stored[-HASH_HEX_LENGTH:]
            expected_seq += batch.num_rows
    return True, ordered


def _links_hold(connection: duckdb.DuckDBPyConnection) -> bool:
    """seq gapless from 1 and unique, and every prev_hash the hash of the row before."""
    gapless = connection.execute(
        "SELECT count(*) = count(DISTINCT seq) AND coalesce(min(seq), 1) = 1 "
        "AND coalesce(max(seq), 0) = count(*) FROM audit_events"
    ).fetchall()[0][0]
    if not gapless:
        return False
    broken = connection.execute(
        f"""
        SELECT count(*) FROM audit_events AS row
        LEFT JOIN audit_events AS before ON before.seq = row.seq - 1
        WHERE row.prev_hash IS DISTINCT FROM
              CASE WHEN row.seq = 1 THEN '{GENESIS_HASH}' ELSE before.hash END
        """
    ).fetchall()[0][0]
    return broken == 0


def _check_events(connection: duckdb.DuckDBPyConnection) -> tuple[Check, _Events]:
    count, last_seq, last_hash = connection.execute(
        "SELECT count(*), max(seq), arg_max(hash, seq) FROM audit_events"
    ).fetchall()[0]
    events = _Events(int(count), last_seq, last_hash)
    problems: list[str] = []
    hashes_match, ordered = _hashes_and_order(connection)
    if not (hashes_match and (ordered or _links_hold(connection))):
        rows = connection.execute(_CHAIN_SQL).fetchall()
        problems = [problem for row in rows for problem in _row_problems(row)]
        if rows and rows[0][-1] > len(rows):
            problems.append(
                f"audit_events: ... and {rows[0][-1] - len(rows)} more rows with problems "
                f"after seq {rows[-1][0]}"
            )
    problems.extend(_tip_problems(connection, last_seq, last_hash))
    summary = (
        f"{count} events, seq 1 to {last_seq}: every hash recomputed, every link to the row "
        "before and the recorded chain tip compared"
        if count
        else "no events yet"
    )
    return Check("events chain (audit_events)", summary, problems), events


def _tip_problems(
    connection: duckdb.DuckDBPyConnection, last_seq: int | None, last_hash: str | None
) -> list[str]:
    tips = connection.execute("SELECT last_seq, last_hash FROM audit_chain_tip").fetchall()
    if len(tips) != 1:
        if not tips and last_seq is None:
            return []
        return [
            f"audit_chain_tip: the chain tip record holds {len(tips)} rows instead of 1: the "
            "end of the trail cannot be checked"
        ]
    tip_seq, tip_hash = tips[0]
    if last_seq is None:
        return [
            f"audit_events: {_seq_range(1, tip_seq)} missing: the trail is empty but {tip_seq} "
            "were written"
        ]
    if last_seq < tip_seq:
        return [
            f"audit_events: {_seq_range(last_seq + 1, tip_seq)} missing at the end of the "
            f"trail: deleted after they were written (the last row written was seq {tip_seq})"
        ]
    if last_seq > tip_seq:
        return [
            f"audit_events: {_seq_range(tip_seq + 1, last_seq)} beyond the last row the store "
            f"wrote (seq {tip_seq}): added to the trail from outside the pipeline"
        ]
    if last_hash != tip_hash:
        return [
            f"audit_events: row seq {tip_seq} is not the row the store wrote last: its hash "
            "differs from the recorded chain tip"
        ]
    return []


# -- 2. the keyed seals -------------------------------------------------------------------------


def _load_checkpoints(connection: duckdb.DuckDBPyConnection) -> list[Checkpoint]:
    rows = connection.execute(
        f"SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY checkpoint, seal"
    ).fetchall()
    return [Checkpoint(*row) for row in rows]


def _check_seals(
    connection: duckdb.DuckDBPyConnection,
    checkpoints: list[Checkpoint],
    events: _Events,
    ledger_seqs: np.ndarray,
    trail_id: str | None,
    key: AuditKey | None,
) -> Check:
    name = "keyed seals (audit_checkpoints)"
    ledger_last = int(ledger_seqs.max()) if len(ledger_seqs) else 0
    if not checkpoints:
        if events.count == 0 and ledger_last == 0:
            return Check(name, "nothing sealed yet (no events)")
        return Check(
            name,
            "no checkpoint in the file",
            [
                f"audit_checkpoints: no keyed checkpoint covers the {events.count} events and "
                f"{ledger_last} record states: the checkpoints were deleted, or the trail was "
                "written before sealing existed (the pipeline's next write seals a trail that "
                "was never sealed, unless an anchor says it was)"
            ],
        )
    problems = _checkpoint_order_problems(checkpoints)
    problems += _checkpoint_target_problems(connection, checkpoints)
    last = checkpoints[-1]
    if events.last_seq is not None and events.last_seq > last.events_seq:
        problems.append(
            f"audit_events: {_seq_range(last.events_seq + 1, events.last_seq)} after the last "
            f"keyed checkpoint ({last.checkpoint}, events up to seq {last.events_seq}): no write "
            "of the pipeline leaves events unsealed, so they were added from outside"
        )
    if ledger_last > last.records_seq:
        problems.append(
            f"audit_record_states: record states seq {last.records_seq + 1} to {ledger_last} "
            f"after the last keyed checkpoint ({last.checkpoint}): added from outside the pipeline"
        )
    if trail_id is None:
        problems.append(
            "audit_trail: the trail id record is missing or holds several rows: the seals "
            "cannot be checked against it"
        )
    summary = (
        f"{len(checkpoints)} checkpoints, the last one ({last.checkpoint}) sealing events up to "
        f"seq {last.events_seq} and record states up to seq {last.records_seq}"
    )
    if key is None:
        return Check(
            name,
            summary + "; the seals themselves were NOT checked: no audit key (set B2B_AUDIT_KEY "
            "or provide the key file, see connectors/audit/keys.py)",
            problems,
            complete=False,
        )
    if trail_id is not None:
        problems += _seal_problems(checkpoints, trail_id, key)
    return Check(name, summary + f"; every seal recomputed with key id {key.key_id}", problems)


def _checkpoint_order_problems(checkpoints: list[Checkpoint]) -> list[str]:
    problems: list[str] = []
    previous: Checkpoint | None = None
    for checkpoint in checkpoints:
        expected = previous.checkpoint + 1 if previous is not None else 1
        if checkpoint.checkpoint < expected:
            problems.append(
                f"audit_checkpoints: checkpoint {checkpoint.checkpoint} appears more than once: "
                "a checkpoint was inserted"
            )
        elif checkpoint.checkpoint > expected:
            last_missing = checkpoint.checkpoint - 1
            missing = (
                f"checkpoint {expected} is"
                if last_missing == expected
                else f"checkpoints {expected} to {last_missing} are"
            )
            problems.append(f"audit_checkpoints: {missing} missing: deleted")
        elif previous is not None and (
            checkpoint.events_seq < previous.events_seq
            or checkpoint.records_seq < previous.records_seq
        ):
            problems.append(
                f"audit_checkpoints: checkpoint {checkpoint.checkpoint} seals less than "
                f"checkpoint {previous.checkpoint} before it: the checkpoints were reordered"
            )
        previous = checkpoint
    return problems


def _checkpoint_target_problems(
    connection: duckdb.DuckDBPyConnection, checkpoints: list[Checkpoint]
) -> list[str]:
    """Each checkpoint's events_hash must be the hash of the event it names."""
    rows = connection.execute(
        f"""
        SELECT c.checkpoint, c.events_seq, count(e.seq) AS found
        FROM audit_checkpoints AS c
        LEFT JOIN audit_events AS e ON e.seq = c.events_seq AND e.hash = c.events_hash
        WHERE c.events_seq > 0 OR c.events_hash <> '{GENESIS_HASH}'
        GROUP BY ALL
        HAVING count(e.seq) = 0
        ORDER BY c.checkpoint
        LIMIT {MAX_REPORTED_PROBLEMS}
        """
    ).fetchall()
    return [
        f"audit_checkpoints: checkpoint {number} sealed event seq {seq}, but that row is gone "
        "or its hash differs from the sealed one: the trail was rewritten after it was sealed"
        for number, seq, _ in rows
    ]


def _seal_problems(checkpoints: list[Checkpoint], trail_id: str, key: AuditKey) -> list[str]:
    problems: list[str] = []
    other_keys = sorted({c.key_id for c in checkpoints} - {key.key_id})
    if other_keys:
        problems.append(
            f"audit_checkpoints: checkpoints sealed with key id {', '.join(other_keys)}, but the "
            f"key given ({key.source}) has id {key.key_id}: use the key the trail was sealed with"
        )
    previous_seal = GENESIS_SEAL
    failed: list[Checkpoint] = []
    for checkpoint in checkpoints:
        expected = key.seal(
            seal_message(
                trail_id=trail_id,
                checkpoint=checkpoint.checkpoint,
                events_seq=checkpoint.events_seq,
                events_hash=checkpoint.events_hash,
                records_seq=checkpoint.records_seq,
                records_digest=checkpoint.records_digest,
                prev_seal=previous_seal,
            )
        )
        if expected != checkpoint.seal and checkpoint.key_id == key.key_id:
            failed.append(checkpoint)
        previous_seal = checkpoint.seal
    for checkpoint in failed[:MAX_REPORTED_PROBLEMS]:
        problems.append(
            f"audit_checkpoints: checkpoint {checkpoint.checkpoint} (events up to seq "
            f"{checkpoint.events_seq}, record states up to seq {checkpoint.records_seq}) does not "
            "carry a valid seal: the trail or its checkpoints were rewritten by someone without "
            "the key"
        )
    if len(failed) > MAX_REPORTED_PROBLEMS:
        problems.append(
            f"audit_checkpoints: ... and {len(failed) - MAX_REPORTED_PROBLEMS} more checkpoints "
            "with invalid seals"
        )
    return problems


# -- 3. exceptions and postings -----------------------------------------------------------------


def _load_ledger(connection: duckdb.DuckDBPyConnection) -> tuple[np.ndarray, pa.ChunkedArray]:
    lines = records.ledger_lines(connection)
    return lines.column("seq").to_numpy(), lines.column("line")


def _ledger_problems(seqs: np.ndarray) -> list[str]:
    if len(seqs) == 0 or (seqs[0] == 1 and (np.diff(seqs) == 1).all()):
        return []
    problems: list[str] = []
    repeated = np.unique(seqs[1:][np.diff(seqs) == 0])
    for seq in repeated[:MAX_REPORTED_PROBLEMS]:
        problems.append(
            f"audit_record_states: seq {seq} appears more than once: a record state was inserted"
        )
    expected = np.arange(1, int(seqs.max()) + 1)
    missing = np.setdiff1d(expected, seqs)
    if len(missing):
        problems.append(
            f"audit_record_states: {len(missing)} record states missing (first seq "
            f"{int(missing[0])}): deleted from the ledger"
        )
    return problems


def _digest_problems(
    checkpoints: list[Checkpoint], seqs: np.ndarray, lines: pa.ChunkedArray
) -> list[str]:
    bounds, numbered = [], []
    after = 0
    for checkpoint in checkpoints:
        start = int(np.searchsorted(seqs, after, side="right"))
        stop = int(np.searchsorted(seqs, checkpoint.records_seq, side="right"))
        bounds.append((start, stop))
        numbered.append(checkpoint)
        after = max(after, checkpoint.records_seq)
    digests = records.range_digests(lines, bounds)
    return [
        f"audit_record_states: the record states sealed by checkpoint {checkpoint.checkpoint} "
        f"(up to seq {checkpoint.records_seq}) were changed after sealing"
        for checkpoint, digest in zip(numbered, digests, strict=True)
        if digest != checkpoint.records_digest
    ][:MAX_REPORTED_PROBLEMS]


def _current_states_sql() -> str:
    parts = []
    for sealed in records.SEALED_TABLES.values():
        parts.append(
            f"""
            SELECT '{sealed.name}' AS table_name, record_key, count(*) AS copies,
                   min(state_hash) AS current_hash, max(state_hash) AS other_hash,
                   any_value(hint) AS hint
            FROM (SELECT t.{sealed.key}::VARCHAR AS record_key,
                         {sealed.state_hash_sql("t")} AS state_hash,
                         t.{sealed.hint}::VARCHAR AS hint
                  FROM {sealed.name} AS t)
            GROUP BY record_key
            """
        )
    return " UNION ALL ".join(parts)


_RECORDS_SQL = f"""
WITH latest AS (
    SELECT table_name, record_key, arg_max_null(state_hash, seq) AS sealed_hash,
           max(seq) AS sealed_seq
    FROM audit_record_states
    GROUP BY table_name, record_key
),
current_rows AS ({_current_states_sql()}),
compared AS (
    SELECT coalesce(l.table_name, c.table_name) AS table_name,
           coalesce(l.record_key, c.record_key) AS record_key,
           l.table_name IS NULL AS never_sealed, l.sealed_hash, l.sealed_seq,
           c.current_hash, coalesce(c.copies, 0) AS copies, c.hint
    FROM latest AS l
    FULL OUTER JOIN current_rows AS c
      ON l.table_name = c.table_name AND l.record_key IS NOT DISTINCT FROM c.record_key
    WHERE coalesce(c.copies, 0) > 1 OR l.sealed_hash IS DISTINCT FROM c.current_hash
)
SELECT *, count(*) OVER () AS problem_rows FROM compared
ORDER BY table_name, record_key
LIMIT {MAX_REPORTED_PROBLEMS}
"""


def _record_problem(row: dict[str, Any]) -> str:
    sealed = records.SEALED_TABLES.get(row["table_name"])
    label = sealed.label if sealed else "record"
    where = f"{row['table_name']}: {label} {row['record_key'] or '(no key)'}"
    if row["copies"] > 1:
        return f"{where} appears {row['copies']} times: a copy was inserted outside the pipeline"
    if row["never_sealed"]:
        return f"{where} has no sealed state: it was added outside the pipeline"
    if row["current_hash"] is None and row["sealed_hash"] is not None:
        return (
            f"{where} is missing: deleted outside the pipeline (its last sealed state is record "
            f"seq {row['sealed_seq']})"
        )
    if row["sealed_hash"] is None:
        return f"{where} was removed by the pipeline but is back: added outside the pipeline"
    hint = sealed.hint if sealed else "value"
    return (
        f"{where} was changed outside the pipeline: it no longer matches its state sealed at "
        f"record seq {row['sealed_seq']} (its {hint} is now {row['hint']!r})"
    )


def _check_records(
    connection: duckdb.DuckDBPyConnection,
    checkpoints: list[Checkpoint],
    seqs: np.ndarray,
    lines: pa.ChunkedArray,
) -> Check:
    problems = _ledger_problems(seqs)
    if checkpoints:
        problems += _digest_problems(checkpoints, seqs, lines)
    cursor = connection.execute(_RECORDS_SQL)
    columns = [d[0] for d in cursor.description]
    rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    problems += [_record_problem(row) for row in rows]
    if rows and rows[0]["problem_rows"] > len(rows):
        problems.append(f"... and {rows[0]['problem_rows'] - len(rows)} more records with problems")
    counts = connection.execute(
        "SELECT (SELECT count(*) FROM exceptions), (SELECT count(*) FROM order_postings)"
    ).fetchall()[0]
    summary = (
        f"{counts[0]} exceptions and {counts[1]} order postings compared with their last sealed "
        f"state; {len(seqs)} record states and their digests checked"
    )
    return Check("exception queue and order postings", summary, problems)


# -- 4. anchors outside the file ----------------------------------------------------------------


def _check_anchors(
    checkpoints: list[Checkpoint], trail_id: str | None, anchors: AnchorsRead
) -> Check:
    name = "anchors outside the file"
    where = " and ".join(description for description, _ in anchors.readings) or "no anchor sink"
    problems: list[str] = []
    for description, reading in anchors.readings:
        problems += [
            f"anchors: the line at byte {offset} of {description} cannot be read"
            for offset in reading.unreadable_at
        ]
    if anchors.trail_id != trail_id:
        problems.append(
            "audit_trail: the trail id changed while verify was reading the file: run it again"
        )
        return Check(name, f"anchors in {where}", problems)
    heads = [head for _, reading in anchors.readings for head in reading.heads]
    if not checkpoints:
        if heads:
            newest = max(heads, key=lambda head: head.checkpoint)
            problems.append(
                f"anchors: {where} records checkpoint {newest.checkpoint} of this trail (events "
                f"up to seq {newest.events_seq}, sealed {newest.sealed_at:%Y-%m-%d %H:%M:%S} "
                "UTC), but the file holds no checkpoint: they were deleted"
            )
        return Check(name, f"anchors of this trail in {where}", problems)
    if not heads:
        problems.append(
            f"anchors: {where} holds no head of this trail (id {trail_id}): the end of the "
            "trail cannot be proven, and a rollback or truncation would go unnoticed"
        )
        return Check(name, f"no anchor of this trail in {where}", problems)
    by_number = {checkpoint.checkpoint: checkpoint for checkpoint in checkpoints}
    last = checkpoints[-1]
    newest = max(heads, key=lambda head: head.checkpoint)
    if newest.checkpoint > last.checkpoint:
        problems.append(
            f"anchors: the trail was cut back: {where} records checkpoint {newest.checkpoint} "
            f"(events up to seq {newest.events_seq}, record states up to seq "
            f"{newest.records_seq}, sealed {newest.sealed_at:%Y-%m-%d %H:%M:%S} UTC), but the "
            f"file ends at checkpoint {last.checkpoint} (events up to seq {last.events_seq}): "
            "what was written after it was deleted"
        )
    mismatched = sorted(
        {
            head.checkpoint
            for head in heads
            if head.checkpoint in by_number
            and (
                by_number[head.checkpoint].seal != head.seal
                or by_number[head.checkpoint].events_seq != head.events_seq
                or by_number[head.checkpoint].records_seq != head.records_seq
            )
        }
    )
    for number in mismatched[:MAX_REPORTED_PROBLEMS]:
        problems.append(
            f"anchors: checkpoint {number} in the file differs from the one anchored in {where}: "
            "the trail was rewritten and sealed again after that anchor was written"
        )
    behind = last.checkpoint - newest.checkpoint
    summary = (
        f"the newest anchor of this trail in {where} (checkpoint "
        f"{newest.checkpoint}, events up to seq {newest.events_seq}, sealed "
        f"{newest.sealed_at:%Y-%m-%d %H:%M:%S} UTC) compared with the file"
    )
    if behind > 0:
        summary += (
            f"; the file's {behind} newest checkpoint{'s are' if behind > 1 else ' is'} not "
            "anchored yet (a cut back to the newest anchor would not be noticed)"
        )
    return Check(name, summary, problems)


def verify_chain(connection: duckdb.DuckDBPyConnection) -> VerifyResult:
    """The events chain alone (no key, no anchors): what verify checked before the seals."""
    check, events = _check_events(connection)
    return VerifyResult(ok=not check.problems, checked=events.count, problems=check.problems)
