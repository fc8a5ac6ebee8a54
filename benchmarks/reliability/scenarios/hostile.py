"""Generated hostile purchases in the portal's list: each must end posted, filtered or queued.

Real purchases are placed first (orders and quotes, from real accounts and SKUs: they are the
templates, and they must still be posted or filtered beside the hostile entries: one bad entry
must stop nothing). The proxy then lists them merged with the generated entries (``hostile.py``)
and answers reads and write-backs of hostile purchases; plain runs follow until a run has
nothing new. A hostile entry is accounted for when its id is posted in the ERP, filtered in the
tracking or held in the queue, or when the queue holds an exception whose payload is the entry
as sent (entries with no usable id); entries sharing an id count once.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from random import Random
from typing import Any

from benchmarks.reliability.hostile import generate
from benchmarks.reliability.plan import Plan
from benchmarks.reliability.proxy import HostilePortal, served_id
from benchmarks.reliability.report import Row
from benchmarks.reliability.sandbox import FULL_BATCH, Sandbox
from benchmarks.reliability.tally import Counts, Snapshot, canonical, count, take_snapshot

TEMPLATES = 30


def _subject(document: Any) -> tuple[str, str]:
    """("id", purchase id) for an entry with a usable SparkLayer id, else ("content", json)."""
    key = served_id(document)
    return ("id", key) if key is not None else ("content", canonical(document))


def account(snapshot: Snapshot, documents: list[Any]) -> tuple[Counts, list[Any]]:
    """Counts per subject, and the entries nothing accounts for."""
    by_subject: dict[tuple[str, str], list[Any]] = {}
    for document in documents:
        by_subject.setdefault(_subject(document), []).append(document)
    counts = Counts(purchases=len(by_subject))
    unaccounted = []
    for (kind, key), versions in by_subject.items():
        times_posted = snapshot.erp_refs.get(key, 0) if kind == "id" else 0
        in_queue = (kind == "id" and key in snapshot.queued) or any(
            canonical(v) in snapshot.queued_payloads for v in versions
        )
        if times_posted:
            counts.posted += 1
            counts.duplicates += times_posted > 1
        elif in_queue:
            counts.queued += 1
        elif kind == "id" and key in snapshot.filtered:
            counts.filtered += 1
        else:
            counts.lost += 1
            unaccounted.append(versions[0])
    return counts, unaccounted


def run(plan: Plan) -> list[Row]:
    rng = Random(plan.seed)
    row = Row(f"{plan.hostile_purchases:,} hostile purchases in the list", trials=1)
    started = time.monotonic()
    with Sandbox("hostile") as sandbox:
        sandbox.prepare()
        real = sandbox.place_orders(TEMPLATES, rng)
        real += sandbox.place_orders(5, rng, types=("quote",))
        templates = [p for p in sandbox.portal_purchases() if isinstance(p, dict)]
        entries = generate(
            templates,
            plan.hostile_purchases,
            rng,
            start=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30),
        )
        portal = HostilePortal(entries)
        with sandbox.proxy(hostile=portal) as proxy:
            sandbox.portal_url = proxy.url
            recovered, outcomes = sandbox.recover(max_runs=plan.hostile_purchases // FULL_BATCH + 3)
            sandbox.portal_url = sandbox.tap_url
        failures = [
            o.stderr.strip().splitlines()[-1] for o in outcomes if o.returncode and o.stderr
        ]
        snapshot = take_snapshot(sandbox)
        counts, unaccounted = account(snapshot, [e.document for e in entries])
        neighbours = count(snapshot, real)
        reasons = _reasons(sandbox)
        leaks = sandbox.secret_leaks()
    row.counts = counts
    row.recovered = int(recovered and counts.lost == 0 and neighbours.lost == 0)
    row.seconds = time.monotonic() - started
    row.notes.append(
        f"{len(outcomes)} runs, exit codes {[o.returncode for o in outcomes]}; the "
        f"{neighbours.purchases} real purchases beside them: {neighbours.posted} posted, "
        f"{neighbours.filtered} filtered, {neighbours.queued} queued, {neighbours.lost} lost"
    )
    row.notes.append(f"queue reasons: {dict(reasons.most_common(8))}")
    for failure in dict.fromkeys(failures):
        row.notes.append(f"a run failed: {failure[:300]}")
    for document in unaccounted[:3]:
        row.notes.append(f"unaccounted for, e.g. {canonical(document)[:200]}")
    if neighbours.lost or neighbours.duplicates:
        row.failed = True
    if leaks:
        row.notes.append(f"the client secret appears in: {', '.join(leaks)}")
        row.failed = True
    return [row]


def _reasons(sandbox: Sandbox) -> Counter[str]:
    from b2b_pipeline.connectors.audit.store import AuditStore

    if not sandbox.audit_path.exists():
        return Counter()
    queue = AuditStore(sandbox.audit_path).exceptions(status=["open", "approved"])
    return Counter(queue.loc[queue["entity"] == "order", "reason_code"])
