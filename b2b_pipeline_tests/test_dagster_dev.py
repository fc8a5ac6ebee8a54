"""``dg dev`` as ``scripts/start`` runs it: the UI answers, the code location loads, the daemon
is healthy, every schedule and sensor is RUNNING, Ctrl-C leaves nothing behind, and a run that
was interrupted (Ctrl-C mid-step) or whose worker was killed holds nothing: the next order is
posted without anyone freeing anything.

Headless: the webserver's ``GET /server_info`` and ``POST /graphql`` are what the UI itself
reads. The environment points the product at a real simulator and a seeded SQLite ERP, so the
sensors the daemon evaluates talk to real systems.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from b2b_pipeline_tests.conftest import CLIENT_ID, CLIENT_SECRET, SITE_ID
from b2b_pipeline_tests.test_definitions import SCHEDULES, SENSORS

REPO = Path(__file__).resolve().parents[1]
DG = str(Path(sys.executable).with_name("dg"))
LOCATION = "b2b_pipeline"  # [tool.dg.project] code_location_name
REPOSITORY = "__repository__"  # the name Dagster gives a Definitions object's repository
ORDERED_SKU = "BRK-0001"  # an active SKU on every demo price list

WORKSPACE_QUERY = """
{
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on RepositoryLocation { name repositories { name } }
          ... on PythonError { message }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""
DAEMON_QUERY = """
{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }
"""
AUTOMATION_QUERY = """
query Automation($selector: RepositorySelector!) {
  schedulesOrError(repositorySelector: $selector) {
    __typename
    ... on Schedules { results { name cronSchedule scheduleState { status } } }
    ... on PythonError { message }
  }
  sensorsOrError(repositorySelector: $selector) {
    __typename
    ... on Sensors { results { name minIntervalSeconds sensorState { status } } }
    ... on PythonError { message }
  }
}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graphql(base: str, query: str, variables: dict | None = None) -> dict:
    response = requests.post(
        f"{base}/graphql", json={"query": query, "variables": variables or {}}, timeout=30
    )
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(what: str, probe, timeout: float, proc: subprocess.Popen, log: Path):
    """Poll ``probe`` until it returns something truthy; fail with the server's log if not."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"dagster dev exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
        try:
            result = probe()
            if result:
                return result
            last = result
        except requests.RequestException as exc:
            last = exc
        time.sleep(1.0)
    pytest.fail(f"{what} not seen in {timeout:.0f} s (last: {last}):\n{log.read_text()[-4000:]}")


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


class DagsterDev:
    """``dg dev`` on one Dagster home and one set of systems, that can be stopped and started
    again (as a person restarting ``scripts/start`` would)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> subprocess.Popen:
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(
                [DG, "dev", "-h", "127.0.0.1", "-p", str(self.port), "--log-level", "warning"],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: SIGINT reaches every child
                # A shell that starts jobs in the background (as CI runners may) ignores
                # SIGINT, and an ignored signal is inherited: give dg dev the terminal's
                # default, as it has when a person starts it, so Ctrl-C is what is tested.
                preexec_fn=_default_sigint,
            )
        return self.proc

    def wait_loaded(self, timeout: float = 180) -> dict:
        assert self.proc is not None

        def location_loaded():
            workspace = graphql(self.base, WORKSPACE_QUERY)["workspaceOrError"]
            assert workspace["__typename"] == "Workspace", workspace
            entries = {e["name"]: e for e in workspace["locationEntries"]}
            entry = entries.get(LOCATION)
            if entry is None or entry["loadStatus"] != "LOADED":
                return None
            return entry

        return wait_for("the code location LOADED", location_loaded, timeout, self.proc, self.log)

    def ctrl_c(self, timeout: float = 60) -> None:
        """SIGINT to the whole process group, as Ctrl-C in a terminal; waits for it to end."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGINT)
        self.proc.wait(timeout=timeout)
        deadline = time.monotonic() + 30
        while group_alive(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.5)

    def kill(self) -> None:
        if self.proc is not None and group_alive(self.proc.pid):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


def environment(simulator, data: Path, home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "VIRTUAL_ENV": str(Path(sys.executable).parents[1]),
        "B2B_DATA_DIR": str(data),
        "SPARKLAYER_BASE_URL": simulator.url,
        "SPARKLAYER_SITE_ID": SITE_ID,
        "SPARKLAYER_CLIENT_ID": CLIENT_ID,
        "SPARKLAYER_CLIENT_SECRET": CLIENT_SECRET,
        "SPARKLAYER_REQUESTS_PER_SECOND": "1000",
        "ERP_DATABASE_URL": f"sqlite:///{data / 'erp.sqlite'}",
        "B2B_AUDIT_DB": str(data / "audit.duckdb"),
    }


@pytest.fixture
def dev(simulator, tmp_path: Path):
    """A seeded SQLite ERP, a Dagster home with the shipped dagster.yaml, and ``dg dev`` on a
    free port (not started yet)."""
    from b2b_pipeline.connectors.erp.gateway import ErpGateway
    from b2b_pipeline.demo import seed_erp

    data = tmp_path / "data"
    data.mkdir()
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "deploy" / "dagster.yaml").read_text())
    env = environment(simulator, data, home)
    gateway = ErpGateway(env["ERP_DATABASE_URL"])
    seed_erp(gateway)
    gateway.dispose()
    server = DagsterDev(env, tmp_path / "dg_dev.log")
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def dagster_dev(dev: DagsterDev):
    """``dg dev`` started: (process, base URL, log file)."""
    proc = dev.start()
    yield proc, dev.base, dev.log


@pytest.mark.slow
def test_dagster_dev_serves_the_ui_with_everything_running_and_stops_on_ctrl_c(
    dagster_dev,
) -> None:
    proc, base, log = dagster_dev

    info = wait_for(
        "GET /server_info",
        lambda: requests.get(f"{base}/server_info", timeout=5).json(),
        120,
        proc,
        log,
    )
    assert "dagster_webserver_version" in info

    def location_loaded():
        workspace = graphql(base, WORKSPACE_QUERY)["workspaceOrError"]
        assert workspace["__typename"] == "Workspace", workspace
        entries = {e["name"]: e for e in workspace["locationEntries"]}
        entry = entries.get(LOCATION)
        if entry is None or entry["loadStatus"] != "LOADED":
            return None
        return entry

    entry = wait_for("the code location LOADED", location_loaded, 180, proc, log)
    loaded = entry["locationOrLoadError"]
    assert loaded["__typename"] == "RepositoryLocation", loaded
    assert [r["name"] for r in loaded["repositories"]] == [REPOSITORY]

    def daemons_healthy():
        statuses = graphql(base, DAEMON_QUERY)["instance"]["daemonHealth"]["allDaemonStatuses"]
        required = {s["daemonType"]: s["healthy"] for s in statuses if s["required"]}
        return required if required and all(required.values()) else None

    daemons = wait_for("a healthy daemon", daemons_healthy, 120, proc, log)
    assert {"SCHEDULER", "SENSOR", "QUEUED_RUN_COORDINATOR"} <= set(daemons)

    selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}
    automation = graphql(base, AUTOMATION_QUERY, {"selector": selector})
    schedules = {
        s["name"]: (s["cronSchedule"], s["scheduleState"]["status"])
        for s in automation["schedulesOrError"]["results"]
    }
    assert schedules == {name: (cron, "RUNNING") for name, (_, cron) in SCHEDULES.items()}
    sensors = {
        s["name"]: (s["minIntervalSeconds"], s["sensorState"]["status"])
        for s in automation["sensorsOrError"]["results"]
    }
    assert sensors == {name: (every, "RUNNING") for name, (_, every) in SENSORS.items()}

    # Ctrl-C, as a person at the terminal would: to the whole process group.
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=60)
    deadline = time.monotonic() + 30
    while group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not group_alive(proc.pid), "a child of dagster dev kept running after Ctrl-C"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/server_info", timeout=5)


LAUNCH_RUN = """
mutation Launch($selector: JobOrPipelineSelector!) {
  launchRun(executionParams: {selector: $selector, runConfigData: {}}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""
RUN_STATUS = """
query Status($runId: ID!) {
  runOrError(runId: $runId) { ... on Run { status stepStats { stepKey status } } }
}
"""
CONCURRENCY = """
{ instance { concurrencyLimits { concurrencyKey slotCount claimedSlots { runId stepKey } } } }
"""


def launch(base: str, job: str) -> str:
    selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": job}
    launched = graphql(base, LAUNCH_RUN, {"selector": selector})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def run_in_a_step(base: str, run_id: str) -> bool:
    run = graphql(base, RUN_STATUS, {"runId": run_id})["runOrError"]
    return run.get("status") == "STARTED" and any(
        step["status"] == "IN_PROGRESS" for step in run.get("stepStats") or []
    )


RUN_EVENTS = """
query Events($runId: ID!) {
  logsForRun(runId: $runId) {
    ... on EventConnection { events { ... on MessageEvent { message } } }
  }
}
"""


def run_worker_pids(base: str, run_id: str) -> list[int]:
    """The run worker's process id, as Dagster logs it ("Started process for run (pid: N)")."""
    import re

    events = graphql(base, RUN_EVENTS, {"runId": run_id})["logsForRun"]["events"]
    return [
        int(found.group(1))
        for event in events
        if (found := re.search(r"pid: (\d+)", event.get("message") or ""))
    ]


@pytest.mark.slow
def test_a_run_stopped_by_ctrl_c_and_a_killed_run_worker_hold_nothing_so_the_next_order_posts(
    dev: DagsterDev, simulator
) -> None:
    """The incident of issue 9: Ctrl-C while a sync was running left a pool slot held by the
    dead run, and after the restart no order reached the ERP for eleven minutes. Now: a sync
    interrupted mid-step by Ctrl-C, a restart, a second sync whose run worker is killed with
    SIGKILL, then an order placed: it is in the ERP within 90 s with nobody doing anything,
    and no concurrency slot is held by anyone."""
    import datetime as dt

    from b2b_pipeline.connectors.erp.gateway import ErpGateway
    from b2b_pipeline.connectors.sparklayer.purchases import purchase_id

    # The portal knows the accounts and prices first (the merchant's first sync), headless.
    first = subprocess.run(
        [str(Path(sys.executable).with_name("b2b-pipeline")), "run"],
        env=dev.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert first.returncode == 0, first.stdout + first.stderr
    # Every portal call now takes a second: a sync is mid-step for a long time.
    requests.put(f"{simulator.url}/_sim/faults", json={"latency_ms": 1000}, timeout=10)

    dev.start()
    dev.wait_loaded()
    interrupted = launch(dev.base, "customer_sync_job")
    wait_for(
        "the sync mid-step", lambda: run_in_a_step(dev.base, interrupted), 120, dev.proc, dev.log
    )
    dev.ctrl_c()
    assert not group_alive(dev.proc.pid), "a child of dg dev kept running after Ctrl-C"

    dev.start()
    dev.wait_loaded()
    killed = launch(dev.base, "customer_sync_job")
    wait_for("the sync mid-step", lambda: run_in_a_step(dev.base, killed), 120, dev.proc, dev.log)
    workers = run_worker_pids(dev.base, killed)
    assert workers, "the run worker of the second sync was not found"
    for pid in workers:
        os.kill(pid, signal.SIGKILL)

    requests.put(f"{simulator.url}/_sim/faults", json={"latency_ms": 0}, timeout=10)
    gateway = ErpGateway(dev.env["ERP_DATABASE_URL"])
    try:
        response = requests.post(
            f"{simulator.url}/_sim/orders",
            json={
                "customer": "CUST0001",
                "type": "order",
                "payment_method": "on_account",
                "customer_reference": "PO-AFTER-RESTART",
                "lines": [{"sku": ORDERED_SKU, "quantity": 2}],
            },
            timeout=10,
        )
        assert response.status_code == 201, response.text
        order_id = purchase_id(response.json())
        placed = time.monotonic()

        def posted():
            orders = gateway.read_sales_orders(
                dt.datetime(2000, 1, 1, tzinfo=dt.UTC), dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
            )
            return order_id in set(orders["external_ref"])

        wait_for("the order in the ERP", posted, 90, dev.proc, dev.log)
        assert time.monotonic() - placed <= 90
    finally:
        gateway.dispose()

    limits = graphql(dev.base, CONCURRENCY)["instance"]["concurrencyLimits"]
    assert [slot for limit in limits for slot in limit["claimedSlots"]] == []
