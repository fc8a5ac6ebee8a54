"""What the Dagster UI costs a run: each job's wall time launched from ``dg dev`` (webserver,
daemon, a run worker process per run, as ``scripts/start`` runs them) against the same job
headless in one process (what ``b2b-pipeline run`` does), on the same data.

The floor is the headless run of the same job on the same systems; the ratio is the UI's
overhead (the run worker's start: a Python process that imports the code location). Both sides
run each job twice and keep the faster, so a one-off stall of the shared machine does not
decide the figure.

    .venv/bin/python benchmarks/bench_job_overhead.py
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SITE, CLIENT, SECRET = "bench-site", "bench-client", "bench-secret"
JOBS = ("customer_sync_job", "price_sync_job", "inventory_sync_job", "order_intake_job")

LAUNCH = """
mutation Launch($selector: JobOrPipelineSelector!) {
  launchRun(executionParams: {selector: $selector, runConfigData: {}}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""
STATUS = """
query Status($runId: ID!) {
  runOrError(runId: $runId) { ... on Run { status creationTime startTime endTime } }
}
"""
LOCATIONS = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graphql(base: str, query: str, variables: dict | None = None) -> dict:
    response = requests.post(
        f"{base}/graphql", json={"query": query, "variables": variables or {}}, timeout=60
    )
    response.raise_for_status()
    return response.json()["data"]


def ui_run_seconds(base: str, location: str, job: str) -> float:
    """From the launch click to the run's end, as the person watching the UI sees it."""
    selector = {"repositoryLocationName": location, "repositoryName": "__repository__"}
    launched = graphql(base, LAUNCH, {"selector": {**selector, "jobName": job}})["launchRun"]
    if launched["__typename"] != "LaunchRunSuccess":
        raise RuntimeError(f"{job}: {launched}")
    run_id = launched["run"]["runId"]
    while True:
        run = graphql(base, STATUS, {"runId": run_id})["runOrError"]
        if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            if run["status"] != "SUCCESS":
                raise RuntimeError(f"{job} ended {run['status']}")
            return run["endTime"] - run["creationTime"]
        time.sleep(0.5)


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench_job_overhead_"))
    data = workdir / "data"
    data.mkdir()
    home = workdir / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "deploy" / "dagster.yaml").read_text())

    from b2b_pipeline.connectors.erp.gateway import ErpGateway
    from b2b_pipeline.demo import seed_erp
    from b2b_pipeline.simulator.server import SimulatorServer

    server = SimulatorServer("127.0.0.1", 0, site_id=SITE, client_id=CLIENT, client_secret=SECRET)
    server.start()
    erp_url = f"sqlite:///{data / 'erp.sqlite'}"
    env = {
        "B2B_DATA_DIR": str(data),
        "DAGSTER_HOME": str(home),
        "VIRTUAL_ENV": str(BIN.parent),
        "SPARKLAYER_BASE_URL": server.url,
        "SPARKLAYER_SITE_ID": SITE,
        "SPARKLAYER_CLIENT_ID": CLIENT,
        "SPARKLAYER_CLIENT_SECRET": SECRET,
        "ERP_DATABASE_URL": erp_url,
        "B2B_AUDIT_DB": str(data / "audit.duckdb"),
    }
    os.environ.update(env)
    gateway = ErpGateway(erp_url)
    seed_erp(gateway)
    gateway.dispose()

    import dagster as dg

    from b2b_pipeline.definitions import build_definitions

    defs = build_definitions()
    quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}

    def headless(job: str) -> float:
        started = time.perf_counter()
        result = defs.resolve_job_def(job).execute_in_process(
            run_config=quiet, instance=dg.DagsterInstance.ephemeral()
        )
        assert result.success, job
        return time.perf_counter() - started

    for job in JOBS:  # the first push of everything: not measured
        headless(job)
    headless_s = {job: min(headless(job), headless(job)) for job in JOBS}

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    dev = subprocess.Popen(
        [str(BIN / "dg"), "dev", "-h", "127.0.0.1", "-p", str(port), "--log-level", "warning"],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=(workdir / "dg_dev.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        location = None
        deadline = time.monotonic() + 240
        while location is None and time.monotonic() < deadline:
            try:
                entries = graphql(base, LOCATIONS)["workspaceOrError"]["locationEntries"]
                location = next((e["name"] for e in entries if e["loadStatus"] == "LOADED"), None)
            except (requests.RequestException, KeyError, TypeError):
                pass
            time.sleep(1)
        if location is None:
            sys.exit(f"dg dev did not load; see {workdir / 'dg_dev.log'}")
        ui_s = {job: min(ui_run_seconds(base, location, job) for _ in range(2)) for job in JOBS}
    finally:
        os.killpg(dev.pid, signal.SIGINT)
        try:
            dev.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
        server.stop()

    load = os.getloadavg()
    print(f"job wall time, demo seed; machine load {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")
    print(f"{'job':<22} {'UI / headless':>14} {'dg dev':>9} {'headless':>9}")
    for job in JOBS:
        ratio = ui_s[job] / headless_s[job]
        print(f"{job:<22} {ratio:>13.1f}x {ui_s[job]:>8.1f}s {headless_s[job]:>8.1f}s")


if __name__ == "__main__":
    main()
