"""Checking the audit trail's hash chain: one vectorised pass over ``audit_events``.

Every row's hash is recomputed from its stored content and ``prev_hash``, its link to the row
before it (``lag(hash) over (order by seq)``) and its seq (gapless from 1) are checked, and the
last row is compared with ``audit_chain_tip``. Each problem names the seq concerned, in words an
auditor can act on.

What this proves: no row was edited, deleted, inserted or reordered by anyone who did not also
recompute every later hash *and* rewrite the chain tip. Protection against such a
knowledgeable writer needs the tip copied somewhere they cannot write (the Parquet export, or the
Dagster event log), which this check can then be given.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from b2b_pipeline.connectors.audit.hashing import GENESIS_HASH, HASH_SQL

# A trail rewritten wholesale would otherwise produce a million lines; the first ones locate it.
MAX_REPORTED_PROBLEMS = 200


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    problems: list[str] = field(default_factory=list)


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
        problems.append(f"seq {seq} appears more than once: a row was inserted into the trail")
    if gap:
        first = 1 if previous_seq is None else previous_seq + 1
        problems.append(f"{_seq_range(first, seq - 1)} missing: deleted from the trail")
    if changed:
        problems.append(
            f"row seq {seq} was changed after it was written: its content no longer matches "
            "its hash"
        )
    elif broken_link and not gap and not duplicate:
        problems.append(
            f"row seq {seq} does not follow row seq {previous_seq}: its prev_hash is not that "
            "row's hash (a row was replaced, inserted or reordered)"
        )
    return problems


def verify_chain(connection: duckdb.DuckDBPyConnection) -> VerifyResult:
    checked, last_seq, last_hash = connection.execute(
        "SELECT count(*), max(seq), arg_max(hash, seq) FROM audit_events"
    ).fetchall()[0]
    rows = connection.execute(_CHAIN_SQL).fetchall()
    problems = [problem for row in rows for problem in _row_problems(row)]
    if rows and rows[0][-1] > len(rows):
        problems.append(
            f"... and {rows[0][-1] - len(rows)} more rows with problems after seq {rows[-1][0]}"
        )
    problems.extend(_tip_problems(connection, last_seq, last_hash))
    return VerifyResult(ok=not problems, checked=int(checked), problems=problems)


def _tip_problems(
    connection: duckdb.DuckDBPyConnection, last_seq: int | None, last_hash: str | None
) -> list[str]:
    tips = connection.execute("SELECT last_seq, last_hash FROM audit_chain_tip").fetchall()
    if len(tips) != 1:
        if not tips and last_seq is None:
            return []
        return [
            f"the chain tip record holds {len(tips)} rows instead of 1: the end of the trail "
            "cannot be checked"
        ]
    tip_seq, tip_hash = tips[0]
    if last_seq is None:
        return [f"{_seq_range(1, tip_seq)} missing: the trail is empty but {tip_seq} were written"]
    if last_seq < tip_seq:
        return [
            f"{_seq_range(last_seq + 1, tip_seq)} missing at the end of the trail: deleted "
            f"after they were written (the last row written was seq {tip_seq})"
        ]
    if last_seq > tip_seq:
        return [
            f"{_seq_range(tip_seq + 1, last_seq)} beyond the last row the store wrote "
            f"(seq {tip_seq}): added to the trail from outside the pipeline"
        ]
    if last_hash != tip_hash:
        return [
            f"row seq {tip_seq} is not the row the store wrote last: its hash differs from the "
            "recorded chain tip"
        ]
    return []
