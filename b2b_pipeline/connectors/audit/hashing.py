"""The audit trail's hash chain: what a row's canonical content is, and how rows are chained.

Every row's ``hash`` is ``sha256(prev_hash || canonical)`` in lowercase hex, where ``prev_hash``
is the previous row's ``hash`` (64 zeros for the first row) and ``canonical`` is the text
below. The canonical text is a DuckDB SQL expression, so that ``verify`` recomputes the whole
chain in one vectorised query, and so that an auditor can recompute it with nothing but the
DuckDB CLI:

    SELECT seq, hash = sha256(prev_hash || <CANONICAL_CONTENT_SQL>) FROM audit_events;

Each text field is written as ``<byte length>:<text>`` (and ``-`` for NULL), so that no choice
of field values can shift text from one field into the next and produce the same canonical
string: moving a ``|`` from ``entity_key`` into ``action`` changes a length prefix.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

GENESIS_HASH = "0" * 64

# strftime gives microseconds (%f), the precision DuckDB stores a TIMESTAMPTZ with, so the
# text is the same when written and when verified, whatever the session time zone.
_OCCURRED_AT_SQL = "strftime(occurred_at AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ')"


def _field(column: str) -> str:
    return f"coalesce(strlen({column})::VARCHAR || ':' || {column}, '-')"


CANONICAL_CONTENT_SQL = (
    "concat_ws('|', "
    + ", ".join(
        [
            "seq::VARCHAR",
            _field("event_id"),
            _OCCURRED_AT_SQL,
            _field("run_id"),
            _field("entity"),
            _field("entity_key"),
            _field("action"),
            _field("category"),
            _field("detail::VARCHAR"),
        ]
    )
    + ")"
)

HASH_SQL = f"sha256(prev_hash || {CANONICAL_CONTENT_SQL})"


def chain_hashes(prev_hash: str, canonical_contents: Iterable[str]) -> list[str]:
    """Hashes of consecutive rows, starting after the row whose hash is ``prev_hash``.

    Inherently sequential (each hash feeds the next), so it runs in Python with hashlib at
    about a microsecond per row; everything around it is vectorised in DuckDB.
    """
    sha256 = hashlib.sha256
    hashes: list[str] = []
    append = hashes.append
    current = prev_hash
    for content in canonical_contents:
        current = sha256((current + content).encode()).hexdigest()
        append(current)
    return hashes
