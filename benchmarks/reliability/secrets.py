"""The secret scan (issue 10 item 4): the client secret and every token the portal issued to
the pipeline, looked for in everything a sandbox's runs left behind.

Needles: the sandbox's client secret (distinctive, random) and every bearer token seen on the
wire between the pipeline and the portal (the proxies in front of the simulator record them,
from token answers and ``Authorization`` headers: the simulator is another process, and the
wire is the one place that knows every token it issued to the pipeline).

Places: everything each ``b2b-pipeline`` command printed (stdout and stderr, ``-v`` logs
included, and the tracebacks and one-line errors of failed runs: exception messages), every
byte of every file under the sandbox's data folder and ``DAGSTER_HOME`` (the run and event
log storage: every run's event records, including step failures' error text), every text
column of every table of the audit file (events, exception messages and payloads, postings,
tracking), and the close packs the month's reconciliation writes.

A token is 43 URL-safe characters (``secrets.token_urlsafe(32)``), so instead of one search
per token the scan finds every run of URL-safe characters at least that long and looks each
43-character window up in the set: exact, and one pass whatever the number of tokens.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

TOKEN_LENGTH = 43
_URLSAFE_RUN = re.compile(rb"[A-Za-z0-9_-]{%d,}" % TOKEN_LENGTH)


@dataclass
class Needles:
    secret: str
    tokens: set[str] = field(default_factory=set)

    def found_in(self, data: bytes | str) -> list[str]:
        """Which kinds of secret ``data`` holds: ``client secret``, ``token``."""
        raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
        found = []
        if self.secret.encode() in raw:
            found.append("client secret")
        if self.tokens and self._has_token(raw):
            found.append("token")
        return found

    def _has_token(self, raw: bytes) -> bool:
        tokens = {t.encode() for t in self.tokens if len(t) == TOKEN_LENGTH}
        others = [t.encode() for t in self.tokens if len(t) != TOKEN_LENGTH]
        for match in _URLSAFE_RUN.finditer(raw):
            run = match.group()
            for start in range(len(run) - TOKEN_LENGTH + 1):
                if run[start : start + TOKEN_LENGTH] in tokens:
                    return True
        return any(token in raw for token in others)


def scan_files(needles: Needles, folders: Iterable[Path]) -> list[str]:
    places = []
    for folder in folders:
        if not folder.exists():
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                for kind in needles.found_in(path.read_bytes()):
                    places.append(f"{kind} in file {path.relative_to(folder.parent)}")
    return places


def scan_audit(needles: Needles, audit_path: Path) -> list[str]:
    """``table.column`` of every audit-file column whose text holds a needle."""
    import duckdb

    if not audit_path.exists():
        return []
    places = []
    with duckdb.connect(str(audit_path), read_only=True) as connection:
        tables = connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
        ).fetchall()
        for (table,) in tables:
            columns = connection.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ?",
                [table],
            ).fetchall()
            for (column,) in columns:
                rows = connection.execute(
                    f'SELECT string_agg(CAST("{column}" AS VARCHAR), chr(10)) FROM "{table}"'
                ).fetchone()
                text = rows[0] if rows else None
                if text:
                    for kind in needles.found_in(text):
                        places.append(f"{kind} in audit {table}.{column}")
    return places


def scan_dagster_records(needles: Needles, dagster_home: Path) -> list[str]:
    """Every run, and every event record of it, in the instance, serialised."""
    if not (dagster_home / "dagster.yaml").exists() and not any(dagster_home.glob("*")):
        return []
    import dagster as dg

    places = []
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        for run in instance.get_runs():
            texts = [dg.serialize_value(run)]
            records = instance.get_records_for_run(run.run_id, limit=1_000_000).records
            texts += [dg.serialize_value(r.event_log_entry) for r in records]
            for kind in needles.found_in("\n".join(texts)):
                places.append(f"{kind} in the event records of run {run.run_id}")
    return places
