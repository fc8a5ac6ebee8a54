"""The audit trail's hash chain: what a row's canonical content is, and how rows are chained.

Every row's ``hash`` is ``sha256(prev_hash || canonical)`` in lowercase hex, where ``prev_hash``
is the previous row's ``hash`` (64 zeros for the first row) and ``canonical`` is the text
below. The canonical text is a DuckDB SQL expression, so that an auditor can recompute the
chain with nothing but the DuckDB CLI:

    SELECT seq, hash = sha256(prev_hash || <CANONICAL_CONTENT_SQL>) FROM audit_events;

``verify.py`` builds the same text in SQL but hashes it in Python (hashlib uses the CPU's SHA
extensions and was faster than DuckDB's ``sha256`` here); the result is the same by definition.

Each text field is written as ``<byte length>:<text>`` (and ``-`` for NULL), so that no choice
of field values can shift text from one field into the next and produce the same canonical
string: moving a ``|`` from ``entity_key`` into ``action`` changes a length prefix.

This chain is unkeyed: anyone can recompute it, so alone it proves nothing against someone who
edits a row and rechains everything after it. The keyed seals over it are in
``checkpoints.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import pyarrow as pa

GENESIS_HASH = "0" * 64
HASH_HEX_LENGTH = 64

# strftime gives microseconds (%f), the precision DuckDB stores a TIMESTAMPTZ with, so the
# text is the same when written and when verified, whatever the session time zone.
_OCCURRED_AT_SQL = "strftime(occurred_at AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ')"


def field_sql(column: str) -> str:
    """``<byte length>:<text>`` of a text expression, ``-`` for NULL (see the module doc)."""
    return f"coalesce(strlen({column})::VARCHAR || ':' || {column}, '-')"


def timestamp_sql(column: str) -> str:
    """A TIMESTAMPTZ as UTC text to the microsecond, ``-`` for NULL, whatever the session zone."""
    return f"coalesce(strftime({column} AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ'), '-')"


_field = field_sql

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

    Inherently sequential (each hash feeds the next), so it runs in Python with hashlib; the
    loop is as bare as Python allows (about 0.8 microseconds a row, most of it the
    interpreter: SHA-256 itself runs at over 1 GB/s with the CPU's SHA extensions).
    """
    sha256 = hashlib.sha256
    hashes: list[str] = []
    append = hashes.append
    current = prev_hash
    for content in canonical_contents:
        current = sha256((current + content).encode()).hexdigest()
        append(current)
    return hashes


def hex_array(joined: pa.Buffer, count: int) -> pa.Array:
    """``count`` 64-character hex digests laid end to end in ``joined``, as an Arrow string
    array built on that buffer (no per-row Python objects)."""
    offsets = pa.py_buffer((np.arange(count + 1, dtype=np.int32) * HASH_HEX_LENGTH).tobytes())
    return pa.Array.from_buffers(pa.string(), count, [None, offsets, joined])


def chain_arrays(prev_hash: str, canonical: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(prev_hash, hash) columns for consecutive rows whose canonical texts are ``canonical``.

    The hashes come out of :func:`chain_hashes` as one string, so both Arrow columns share one
    buffer: ``prev_hash`` is the same digests shifted by one, starting with ``prev_hash``.
    """
    count = len(canonical)
    hashes = chain_hashes(prev_hash, canonical.to_pylist())
    if len(prev_hash.encode()) != HASH_HEX_LENGTH:  # a damaged tip: verify will name it
        return pa.array([prev_hash, *hashes[:-1]], pa.string()), pa.array(hashes, pa.string())
    joined = pa.py_buffer((prev_hash + "".join(hashes)).encode("ascii"))
    return (
        hex_array(joined, count),
        hex_array(joined.slice(HASH_HEX_LENGTH), count),
    )
