"""``kill -9`` of a run worker under ``dg dev``: the Dagster daemon's sensor starts the order
intake by itself, and must also recover by itself.

The sandbox's systems as for the headless trials, with ``dg dev`` (webserver, daemon, code
server: ``benchmarks/dg_dev.py``) on the sandbox's ``DAGSTER_HOME`` and the shipped
``dagster.yaml`` (run monitoring, run retries). Each trial places a batch of orders and waits
for the order sensor's run to start; the run worker's pid is read from the run's own engine
event ("Started process for run (pid: N)"), and the worker is sent SIGKILL after a random delay
drawn over the length of an uninterrupted intake run (the first batch's, not killed). Nobody
then launches anything: the trial is **recovered** when, before ``daemon_recovery_s``, every
order of the batch is posted or queued with no intake run in flight (run monitoring marks the
dead run failed; run retries or the sensor's next request finish the work).

The secret scan of this sandbox also reads every run's event records through the webserver's
GraphQL API (what the UI shows), beside the instance's storage.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import statistics
import time
from collections import Counter
from random import Random
from typing import Any

from benchmarks.reliability.plan import Plan
from benchmarks.reliability.report import Row
from benchmarks.reliability.sandbox import Sandbox
from benchmarks.reliability.tally import Counts, count, take_snapshot

ORDER_JOB = "order_intake_job"
RUN_RECORDS = """
query Runs($job: String!) {
  runsOrError(filter: {pipelineName: $job}, limit: 100) {
    ... on Runs { results { runId status startTime endTime } }
  }
}
"""
ALL_RUNS = "{ runsOrError(limit: 500) { ... on Runs { results { runId } } } }"
LOGS = """
query Logs($runId: ID!, $cursor: String) {
  logsForRun(runId: $runId, afterCursor: $cursor, limit: 1000) {
    __typename
    ... on EventConnection {
      cursor
      hasMore
      events {
        __typename
        ... on MessageEvent { message }
        ... on DisplayableEvent { description metadataEntries { label description } }
        ... on ErrorEvent { error { message stack causes { message stack } } }
        ... on EngineEvent { markerStart }
      }
    }
    ... on PythonError { message }
  }
}
"""
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


def _runs(dev: Any) -> list[dict[str, Any]]:
    from benchmarks.dg_dev import graphql

    found = graphql(dev.base, RUN_RECORDS, {"job": ORDER_JOB})["runsOrError"]
    return list(found.get("results") or [])


def _worker_pid(dev: Any, run_id: str) -> int | None:
    """The run worker's pid, from the engine event the launcher writes when it starts it."""
    for event in _events(dev, run_id):
        message = event.get("message") or ""
        if "pid" in message and "process" in message.lower():
            digits = "".join(c if c.isdigit() else " " for c in message.split("pid", 1)[1])
            if digits.split():
                return int(digits.split()[0])
    return None


def _events(dev: Any, run_id: str) -> list[dict[str, Any]]:
    from benchmarks.dg_dev import graphql

    events: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = graphql(dev.base, LOGS, {"runId": run_id, "cursor": cursor})["logsForRun"]
        if page.get("__typename") != "EventConnection":
            return events
        events.extend(page["events"])
        cursor = page["cursor"]
        if not page["hasMore"]:
            return events


def _wait_for_new_run(dev: Any, known: set[str], deadline: float) -> dict[str, Any] | None:
    while time.monotonic() < deadline:
        for run in _runs(dev):
            if run["runId"] not in known and run["status"] == "STARTED":
                return run
        time.sleep(0.5)
    return None


def _in_flight(dev: Any) -> bool:
    return any(run["status"] not in FINISHED for run in _runs(dev))


def _settled(sandbox: Sandbox, dev: Any, ids: list[str], deadline: float) -> Counts:
    """Wait, launching nothing, until every order of ``ids`` is posted or queued and no intake
    run is in flight (or the deadline passes); the counts then."""
    counts = Counts()
    while time.monotonic() < deadline:
        if not _in_flight(dev):
            with contextlib.suppress(Exception):  # a run may start between the two reads
                counts = count(take_snapshot(sandbox), ids)
                if counts.lost == 0 and not _in_flight(dev):
                    return counts
        time.sleep(1)
    return count(take_snapshot(sandbox), ids)


def graphql_leaks(sandbox: Sandbox, dev: Any) -> list[str]:
    """Needles in every run's event records as the webserver's GraphQL API serves them."""
    from benchmarks.dg_dev import graphql
    from benchmarks.reliability.secrets import Needles

    needles = Needles(sandbox.secret, set(sandbox.tokens))
    places = []
    runs = graphql(dev.base, ALL_RUNS)["runsOrError"].get("results") or []
    for run in runs:
        text = json.dumps(_events(dev, run["runId"]))
        places += [
            f"{kind} in GraphQL logsForRun {run['runId']}" for kind in needles.found_in(text)
        ]
    return places


def _poll_every(sandbox: Sandbox, seconds: int) -> None:
    """The shipped dagster.yaml with run monitoring polling every ``seconds``."""
    path = sandbox.dagster_home / "dagster.yaml"
    shipped = path.read_text()
    changed = re.sub(r"poll_interval_seconds: \d+", f"poll_interval_seconds: {seconds}", shipped)
    if changed == shipped:
        raise RuntimeError("the shipped dagster.yaml has no run monitoring poll interval")
    path.write_text(changed)


def run(plan: Plan) -> list[Row]:
    from benchmarks.dg_dev import BIN, DgDev

    rng = Random(plan.seed + 3)
    row = Row(f"kill -9 of the run worker under dg dev, {plan.orders:,}-order intake")
    started = time.monotonic()
    with Sandbox("daemon") as sandbox:
        sandbox.prepare()
        _poll_every(sandbox, plan.daemon_interval_s)
        env = sandbox.env(
            VIRTUAL_ENV=str(BIN.parent),  # dg checks it runs in the venv
            B2B_ORDER_SENSOR_SECONDS=str(plan.daemon_interval_s),
        )
        with DgDev(env, sandbox.logs / "dg-dev.log") as dev:
            known = {run["runId"] for run in _runs(dev)}
            span = 0.0
            runs_seen = 0
            settled: list[float] = []
            for trial in range(plan.daemon_trials + 1):
                ids = sandbox.place_orders(plan.orders, rng)
                # A run the sensor does not start within a few ticks is a finding.
                begun = _wait_for_new_run(dev, known, time.monotonic() + 60)
                if begun is None:
                    row.notes.append(f"trial {trial}: the sensor started no run in 60 s")
                    row.trials += trial > 0
                    continue
                known.add(begun["runId"])
                if trial == 0:  # the calibration run: not killed, measured
                    counts = _settled(sandbox, dev, ids, time.monotonic() + 300)
                    finished = {r["runId"]: r for r in _runs(dev)}.get(begun["runId"], {})
                    if finished.get("endTime") and finished.get("startTime"):
                        span = float(finished["endTime"]) - float(finished["startTime"])
                    row.notes.append(f"an uninterrupted intake run under dg dev took {span:.1f} s")
                    known |= {r["runId"] for r in _runs(dev)}
                    continue
                pid = None
                for _ in range(40):
                    pid = _worker_pid(dev, begun["runId"])
                    if pid is not None:
                        break
                    time.sleep(0.25)
                time.sleep(rng.uniform(0.0, max(span, 2.0) * 0.8))
                killed_at = time.monotonic()
                if pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                else:
                    row.notes.append(f"trial {trial}: no worker pid in the run's events")
                counts = _settled(sandbox, dev, ids, killed_at + plan.daemon_recovery_s)
                row.trials += 1
                row.counts.add(counts)
                ok = counts.lost == 0 and counts.duplicates == 0 and not _in_flight(dev)
                row.recovered += int(ok)
                after = time.monotonic() - killed_at
                if not ok:
                    row.notes.append(
                        f"trial {trial}: {counts.lost} of {counts.purchases} orders neither "
                        f"posted nor queued {after:.0f} s after the kill, no manual action"
                    )
                else:
                    settled.append(after)
                fresh = [r for r in _runs(dev) if r["runId"] not in known]
                runs_seen += len(fresh)
                known |= {r["runId"] for r in fresh}
            ended = Counter(r["status"] for r in _runs(dev))
            sandbox.found_elsewhere += graphql_leaks(sandbox, dev)
        leaks = sandbox.secret_leaks()
    row.seconds = time.monotonic() - started
    if settled:
        row.notes.append(
            f"{len(settled)} trials settled with nobody acting, "
            f"{min(settled):.0f}-{max(settled):.0f} s after the kill "
            f"(median {statistics.median(settled):.0f} s); sensor and run monitoring every "
            f"{plan.daemon_interval_s} s"
        )
    row.notes.append(f"intake runs under dg dev, by status: {dict(ended)}")
    if leaks:
        row.notes.append(f"secrets found: {', '.join(leaks[:5])}")
        row.failed = True
    return [row]
