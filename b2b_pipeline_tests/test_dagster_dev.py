"""``dagster dev`` as ``scripts/start`` runs it: the UI answers, the code location loads, the
daemon is healthy, every schedule and sensor is RUNNING, and Ctrl-C leaves nothing behind.

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
DAGSTER = str(Path(sys.executable).with_name("dagster"))
LOCATION = "b2b_pipeline.definitions"
REPOSITORY = "__repository__"  # the name Dagster gives a Definitions object's repository

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


@pytest.fixture
def dagster_dev(simulator, tmp_path: Path):
    """``dagster dev -w workspace.yaml`` in its own process group, on a free port."""
    from b2b_pipeline.connectors.erp.gateway import ErpGateway
    from b2b_pipeline.demo import seed_erp

    data = tmp_path / "data"
    data.mkdir()
    erp_url = f"sqlite:///{data / 'erp.sqlite'}"
    gateway = ErpGateway(erp_url)
    seed_erp(gateway)
    gateway.dispose()
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "deploy" / "dagster.yaml").read_text())
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "B2B_DATA_DIR": str(data),
        "SPARKLAYER_BASE_URL": simulator.url,
        "SPARKLAYER_SITE_ID": SITE_ID,
        "SPARKLAYER_CLIENT_ID": CLIENT_ID,
        "SPARKLAYER_CLIENT_SECRET": CLIENT_SECRET,
        "SPARKLAYER_REQUESTS_PER_SECOND": "1000",
        "ERP_DATABASE_URL": erp_url,
        "B2B_AUDIT_DB": str(data / "audit.duckdb"),
    }
    log = tmp_path / "dagster_dev.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [DAGSTER, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: SIGINT reaches every child
            # A shell that starts jobs in the background (as CI runners may) ignores SIGINT,
            # and an ignored signal is inherited: give dagster dev the terminal's default, as
            # it has when a person starts it, so Ctrl-C is what is being tested.
            preexec_fn=_default_sigint,
        )
    try:
        yield proc, f"http://127.0.0.1:{port}", log
    finally:
        if group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


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

    entry = wait_for("the code location LOADED", location_loaded, 120, proc, log)
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
