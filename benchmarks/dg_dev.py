"""What the benchmarks that run under ``dg dev`` share: a throwaway data folder and Dagster
home with the shipped ``dagster.yaml``, the environment pointing the product at an in-process
simulator, and ``dg dev`` itself (started in its own process group, stopped with SIGINT as
Ctrl-C would, asked through the UI's GraphQL API).
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

LAUNCH = """
mutation Launch($selector: JobOrPipelineSelector!) {
  launchRun(executionParams: {selector: $selector, runConfigData: {}}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
  }
}
"""
RUN_STATUS = """
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
    body = response.json()
    if body.get("errors"):
        raise RuntimeError(body["errors"])
    return body["data"]


def workspace(prefix: str) -> tuple[Path, Path, Path]:
    """(work folder, data folder, Dagster home with the shipped dagster.yaml)."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    data = workdir / "data"
    data.mkdir()
    home = workdir / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "deploy" / "dagster.yaml").read_text())
    return workdir, data, home


def environment(portal_url: str, data: Path, home: Path) -> dict[str, str]:
    """The product's variables for these files and the in-process simulator."""
    return {
        "B2B_DATA_DIR": str(data),
        "DAGSTER_HOME": str(home),
        "VIRTUAL_ENV": str(BIN.parent),  # dg checks it runs in the project's environment
        "SPARKLAYER_BASE_URL": portal_url,
        "SPARKLAYER_SITE_ID": SITE,
        "SPARKLAYER_CLIENT_ID": CLIENT,
        "SPARKLAYER_CLIENT_SECRET": SECRET,
        "ERP_DATABASE_URL": f"sqlite:///{data / 'erp.sqlite'}",
        "B2B_AUDIT_DB": str(data / "audit.duckdb"),
    }


class DgDev:
    """``dg dev`` on a free port; ``with DgDev(...) as dev:`` waits for the code location."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.base = f"http://127.0.0.1:{free_port()}"
        self.location = ""
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> DgDev:
        port = self.base.rsplit(":", 1)[1]
        self._proc = subprocess.Popen(
            [str(BIN / "dg"), "dev", "-h", "127.0.0.1", "-p", port, "--log-level", "warning"],
            cwd=REPO,
            env={**os.environ, **self.env},
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.monotonic() + 240
        while not self.location and time.monotonic() < deadline:
            try:
                entries = graphql(self.base, LOCATIONS)["workspaceOrError"]["locationEntries"]
                self.location = next(
                    (e["name"] for e in entries if e["loadStatus"] == "LOADED"), ""
                )
            except (requests.RequestException, RuntimeError, KeyError, TypeError):
                pass
            time.sleep(1)
        if not self.location:
            self.__exit__()
            sys.exit(f"dg dev did not load the code location; see {self.log}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._proc is None:
            return
        os.killpg(self._proc.pid, signal.SIGINT)  # Ctrl-C: SIGTERM leaves children running
        try:
            self._proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, signal.SIGKILL)

    def launch(self, job: str) -> str:
        """Start ``job`` as the UI's Launch button does; returns the run id."""
        selector = {
            "repositoryLocationName": self.location,
            "repositoryName": "__repository__",
            "jobName": job,
        }
        launched = graphql(self.base, LAUNCH, {"selector": selector})["launchRun"]
        if launched["__typename"] != "LaunchRunSuccess":
            raise RuntimeError(f"could not launch {job}: {launched}")
        return launched["run"]["runId"]

    def run_status(self, run_id: str) -> dict:
        return graphql(self.base, RUN_STATUS, {"runId": run_id})["runOrError"]
