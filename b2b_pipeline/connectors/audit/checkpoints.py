"""Keyed checkpoints: one HMAC seal per write transaction over everything the trail holds.

Every write transaction of the store that appended events or ledger rows ends, in the same
transaction, with one row of ``audit_checkpoints``:

    seal = HMAC-SHA256(key, "b2b-pipeline audit checkpoint v1" \\n trail_id \\n checkpoint
                            \\n events_seq \\n events_hash \\n records_seq \\n records_digest
                            \\n previous checkpoint's seal)

``events_hash`` is the events chain's hash at ``events_seq``, which covers every earlier event
through the chain; ``records_digest`` is the SHA-256 of the ledger rows this transaction added
(``records.py``); the previous seal links the checkpoints into a chain of their own. Verifying
a seal needs only stored values, so all of them are checked independently.

Why per checkpoint and not per event: a keyed hash per row would put an HMAC (about 1.5
microseconds in Python, twice a plain hash) inside the sequential loop that chains a million
events, and would add nothing: a checkpoint's seal already covers every row before it through
the chain, and no event or ledger row is ever written outside a sealed transaction, so an event
after the last checkpoint was added from outside. ``benchmarks/bench_audit.py`` measures both.

What the seals prove and what they do not: nobody without the key (``keys.py``) can edit,
insert, delete or reorder a sealed row, even recomputing every hash, without a seal failing.
Cutting the trail back to an earlier checkpoint keeps every remaining seal genuine; that is
caught by the anchors (``anchors.py``), which hold the newest head outside the file.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import duckdb

from b2b_pipeline.config.settings import ConfigurationError
from b2b_pipeline.connectors.audit import records
from b2b_pipeline.connectors.audit.anchors import ChainHead
from b2b_pipeline.connectors.audit.events import chain_tip
from b2b_pipeline.connectors.audit.keys import AuditKey, AuditKeyError

SEAL_VERSION = "b2b-pipeline audit checkpoint v1"
GENESIS_SEAL = "0" * 64

# Called with True when the trail is already sealed (a key must then exist, never be created).
KeySource = Callable[[bool], AuditKey | None]


@dataclass(frozen=True)
class Checkpoint:
    checkpoint: int
    events_seq: int
    events_hash: str
    records_seq: int
    records_digest: str
    key_id: str
    sealed_at: datetime
    run_id: str | None
    seal: str


def seal_message(
    *,
    trail_id: str,
    checkpoint: int,
    events_seq: int,
    events_hash: str,
    records_seq: int,
    records_digest: str,
    prev_seal: str,
) -> str:
    # Every field is a uuid, a number or a hex digest: none can contain the separator.
    return "\n".join(
        [
            SEAL_VERSION,
            trail_id,
            str(checkpoint),
            str(events_seq),
            events_hash,
            str(records_seq),
            records_digest,
            prev_seal,
        ]
    )


CHECKPOINT_COLUMNS = (
    "checkpoint, events_seq, events_hash, records_seq, records_digest, key_id, sealed_at, "
    "run_id, seal"
)


def last_checkpoint(connection: duckdb.DuckDBPyConnection) -> Checkpoint | None:
    rows = connection.execute(
        f"SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY checkpoint DESC LIMIT 1"
    ).fetchall()
    return Checkpoint(*rows[0]) if rows else None


def trail_id_in(
    connection: duckdb.DuckDBPyConnection, *, now: datetime | None = None
) -> str | None:
    """This file's trail id; with ``now``, one is created if the file has none."""
    rows = connection.execute("SELECT trail_id FROM audit_trail LIMIT 2").fetchall()
    if rows or now is None:
        return str(rows[0][0]) if len(rows) == 1 else None
    trail_id = str(uuid.uuid4())
    connection.execute("INSERT INTO audit_trail VALUES (?, ?)", [trail_id, now])
    return trail_id


def head(connection: duckdb.DuckDBPyConnection, audit_file: str | None) -> ChainHead | None:
    """The newest sealed checkpoint as a chain head, or None for a trail never sealed."""
    last = last_checkpoint(connection)
    trail_id = trail_id_in(connection)
    if last is None or trail_id is None:
        return None
    return _as_head(trail_id, last, audit_file)


def _as_head(trail_id: str, checkpoint: Checkpoint, audit_file: str | None) -> ChainHead:
    return ChainHead(
        trail_id=trail_id,
        checkpoint=checkpoint.checkpoint,
        events_seq=checkpoint.events_seq,
        records_seq=checkpoint.records_seq,
        seal=checkpoint.seal,
        sealed_at=checkpoint.sealed_at,
        audit_file=audit_file,
    )


class SealRefused(ConfigurationError):
    """The file looks stripped of its seals: the store will not seal over it (one line)."""


def prepare_in(
    connection: duckdb.DuckDBPyConnection,
    *,
    now: datetime,
    anchored: Callable[[], bool],
    audit_file: str,
) -> None:
    """At the start of every write transaction: a file with content but no checkpoint was
    written before sealing existed, and its exceptions and postings get their first sealed
    state now, so that verify has something to compare them with. Unless an anchor says
    this file *was* sealed: then its checkpoints were deleted, perhaps to seal a rewritten
    trail, and writing stops until a person has looked (``audit verify``)."""
    if connection.execute("SELECT count(*) FROM audit_checkpoints").fetchall()[0][0]:
        return
    events_seq, _ = chain_tip(connection)
    rows = connection.execute(
        "SELECT (SELECT count(*) FROM exceptions) + (SELECT count(*) FROM order_postings) "
        "+ (SELECT count(*) FROM audit_record_states)"
    ).fetchall()[0][0]
    if events_seq == 0 and rows == 0:
        return  # a new file
    if anchored():
        raise SealRefused(
            f"the audit trail {audit_file} has lost its checkpoints although anchors say it "
            "was sealed: run `b2b-pipeline audit verify`; nothing will be written to it until "
            "it is restored from a backup"
        )
    records.seal_unsealed_in(connection, run_id=None, now=now)


def seal_in(
    connection: duckdb.DuckDBPyConnection,
    *,
    key_source: KeySource,
    now: datetime,
    audit_file: str | None,
) -> ChainHead | None:
    """Seal what this transaction wrote; returns the new head, or None if nothing needed it."""
    last = last_checkpoint(connection)
    events_seq, events_hash = chain_tip(connection)
    records_seq = records.last_seq(connection)
    if last is not None and (last.events_seq, last.records_seq) == (events_seq, records_seq):
        return None
    if last is None and events_seq == 0 and records_seq == 0:
        return None
    key = key_source(last is not None)
    if key is None:
        raise AuditKeyError(
            "the audit trail is sealed but no audit key is available: restore the key file "
            "or set B2B_AUDIT_KEY to the key the trail was sealed with"
        )
    if last is not None and last.key_id != key.key_id:
        raise AuditKeyError(
            f"the audit trail was sealed with key id {last.key_id}, but the key from "
            f"{key.source} has id {key.key_id}: restore the original key (sealing on with "
            "another would make every earlier seal fail verification)"
        )
    trail_id = trail_id_in(connection, now=now)
    if trail_id is None:
        raise AuditKeyError(
            "the audit trail's id record (audit_trail) holds more than one row: run "
            "`b2b-pipeline audit verify` and restore the file from a backup"
        )
    after = last.records_seq if last is not None else 0
    checkpoint = Checkpoint(
        checkpoint=(last.checkpoint if last is not None else 0) + 1,
        events_seq=events_seq,
        events_hash=events_hash,
        records_seq=records_seq,
        records_digest=records.range_digest(connection, after, records_seq),
        key_id=key.key_id,
        sealed_at=now,
        run_id=_run_of(connection, last, events_seq, records_seq),
        seal="",
    )
    seal = key.seal(
        seal_message(
            trail_id=trail_id,
            checkpoint=checkpoint.checkpoint,
            events_seq=checkpoint.events_seq,
            events_hash=checkpoint.events_hash,
            records_seq=checkpoint.records_seq,
            records_digest=checkpoint.records_digest,
            prev_seal=last.seal if last is not None else GENESIS_SEAL,
        )
    )
    connection.execute(
        f"INSERT INTO audit_checkpoints ({CHECKPOINT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            checkpoint.checkpoint,
            checkpoint.events_seq,
            checkpoint.events_hash,
            checkpoint.records_seq,
            checkpoint.records_digest,
            checkpoint.key_id,
            checkpoint.sealed_at,
            checkpoint.run_id,
            seal,
        ],
    )
    return ChainHead(
        trail_id=trail_id,
        checkpoint=checkpoint.checkpoint,
        events_seq=events_seq,
        records_seq=records_seq,
        seal=seal,
        sealed_at=now,
        audit_file=audit_file,
    )


def _run_of(
    connection: duckdb.DuckDBPyConnection,
    last: Checkpoint | None,
    events_seq: int,
    records_seq: int,
) -> str | None:
    """The run that wrote this transaction's newest event (or ledger row), for people."""
    if events_seq > (last.events_seq if last is not None else 0):
        sql, seq = "SELECT run_id FROM audit_events WHERE seq = ? LIMIT 1", events_seq
    else:
        sql, seq = "SELECT run_id FROM audit_record_states WHERE seq = ? LIMIT 1", records_seq
    rows = connection.execute(sql, [seq]).fetchall()
    return rows[0][0] if rows else None
