"""One throw-away installation of the product: a portal, an ERP, an audit file, the CLI.

The SparkLayer simulator runs as its own ``b2b-pipeline sim`` process on a free loopback port,
with a state file, so a scenario can stop the portal (SIGTERM: it saves its state) and start it
again on the same address, as a real outage and recovery would look from the pipeline. The ERP
is a SQLite file and the audit trail a DuckDB file, both in the sandbox folder. Pipeline runs
are ``b2b-pipeline`` processes with the sandbox's environment (and their own process group, so
``kill -9`` takes the whole run). Buyers act on the portal directly, never through a proxy.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from random import Random
from typing import IO, Any

import requests

from benchmarks.reliability.report import Row

B2B = str(Path(sys.executable).with_name("b2b-pipeline"))
SITE_ID = "reliability-site"
CLIENT_ID = "reliability-client"
# Variables a sandbox sets itself; inherited values would point runs at someone else's systems.
SYSTEM_VARIABLES = (
    "SPARKLAYER_BASE_URL",
    "SPARKLAYER_SITE_ID",
    "SPARKLAYER_CLIENT_ID",
    "SPARKLAYER_CLIENT_SECRET",
    "SPARKLAYER_REQUESTS_PER_SECOND",
    "ERP_DATABASE_URL",
    "B2B_AUDIT_DB",
    "B2B_MAPPINGS",
    "B2B_ALERT_WEBHOOK_URL",
    "B2B_DATA_DIR",
    "DAGSTER_HOME",
)
# Set (by ``--keep``) to leave each sandbox's folder, logs included, for a post-mortem.
KEEP_VARIABLE = "B2B_RELIABILITY_KEEP"
# A run that handled this many purchases may have left more for the next (the intake's batch).
FULL_BATCH = 5000
# A run of the full cycle on a few thousand orders takes seconds; a hung one is a finding.
RUN_TIMEOUT_S = 600


@dataclass(frozen=True)
class Scan:
    """One sandbox's secret scan: how many tokens were looked for, and where any was found."""

    sandbox: str
    tokens: int
    commands: int
    places: list[str]


# Every scan of this process, for the suite's summary line.
SCANS: list[Scan] = []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Outcome:
    """A finished ``b2b-pipeline`` process."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class Running:
    """A ``b2b-pipeline`` process still running (its output goes to files)."""

    args: tuple[str, ...]
    process: subprocess.Popen[bytes]
    out_path: Path
    err_path: Path
    started: float
    _files: list[IO[bytes]] = field(default_factory=list)

    def kill9(self) -> None:
        """SIGKILL the run and everything it started (its process group)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def wait(self, timeout: float = RUN_TIMEOUT_S) -> Outcome:
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            code = self.process.wait()
            code = code if code else -9
        for handle in self._files:
            handle.close()
        return Outcome(
            self.args,
            code,
            self.out_path.read_text(errors="replace"),
            self.err_path.read_text(errors="replace"),
            time.monotonic() - self.started,
        )


class Sandbox:
    """Temporary folder, simulator process, ERP, audit file, and the environment for runs."""

    def __init__(self, name: str, *, root: Path | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"reliability-{name}-", dir=root))
        self.data = self.root / "data"
        self.data.mkdir()
        self.logs = self.root / "logs"
        self.logs.mkdir()
        # Runs are recorded in a persistent instance (the shipped dagster.yaml), as the
        # schedules' runs are, so the secret scan reads their event records too.
        self.dagster_home = self.root / "dagster_home"
        self.dagster_home.mkdir()
        shipped = Path(__file__).resolve().parents[2] / "deploy" / "dagster.yaml"
        (self.dagster_home / "dagster.yaml").write_text(shipped.read_text())
        self.reports = self.root / "reports"
        # Distinctive, so a scan of every output can prove it never leaks.
        self.secret = f"rel-secret-{uuid.uuid4().hex}"
        self.port = free_port()
        self.sim_url = f"http://127.0.0.1:{self.port}"
        # Every token issued to the pipeline, recorded on the wire by the proxies (the tap in
        # front of the simulator, and any fault proxy): needles for the secret scan.
        self.tokens: set[str] = set()
        self._tap: Any = None
        self.tap_url = self.sim_url
        self.portal_url = self.sim_url  # where runs send portal calls (a proxy may take over)
        self.erp_path = self.data / "erp.sqlite"
        self.audit_path = self.data / "audit.duckdb"
        self.outputs: list[Outcome] = []
        # Places a scenario scanned itself (the GraphQL API under dg dev), with what it found.
        self.found_elsewhere: list[str] = []
        self._simulator: subprocess.Popen[bytes] | None = None
        self._counter = 0
        self._session = requests.Session()

    # -- environment and processes --------------------------------------------------------------

    def env(self, **overrides: str) -> dict[str, str]:
        clean = {k: v for k, v in os.environ.items() if k not in SYSTEM_VARIABLES}
        return {
            **clean,
            "B2B_DATA_DIR": str(self.data),
            "SPARKLAYER_BASE_URL": self.portal_url,
            "SPARKLAYER_SITE_ID": SITE_ID,
            "SPARKLAYER_CLIENT_ID": CLIENT_ID,
            "SPARKLAYER_CLIENT_SECRET": self.secret,
            # The client's own pacing is not under test here (the client tests prove it).
            "SPARKLAYER_REQUESTS_PER_SECOND": "1000",
            "ERP_DATABASE_URL": f"sqlite:///{self.erp_path}",
            "B2B_AUDIT_DB": str(self.audit_path),
            "DAGSTER_HOME": str(self.dagster_home),
            "PYTHONWARNINGS": "ignore",
            **overrides,
        }

    def start(self, *args: str, **env: str) -> Running:
        self._counter += 1
        stem = self.logs / f"{self._counter:04d}-{'-'.join(args)[:40].replace('/', '_')}"
        out_path, err_path = stem.with_suffix(".out"), stem.with_suffix(".err")
        out, err = out_path.open("wb"), err_path.open("wb")
        process = subprocess.Popen(
            [B2B, *args],
            env=self.env(**env),
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: kill -9 reaches all of it
        )
        return Running(tuple(args), process, out_path, err_path, time.monotonic(), [out, err])

    def cli(self, *args: str, **env: str) -> Outcome:
        outcome = self.start(*args, **env).wait(RUN_TIMEOUT_S)
        self.outputs.append(outcome)
        return outcome

    def run(self, **env: str) -> Outcome:
        """``b2b-pipeline run --format json``: one full cycle, as the schedules do."""
        return self.cli("run", "--format", "json", **env)

    def recover(self, *, max_runs: int = 4) -> tuple[bool, list[Outcome]]:
        """Plain runs, as the schedules would start them, until one exits 0 and says nothing is
        left waiting (at most ``max_runs``). Returns whether the last exited 0."""
        outcomes = []
        for _ in range(max_runs):
            outcome = self.run()
            outcomes.append(outcome)
            if outcome.returncode == 0 and not more_waiting(outcome):
                break
        return bool(outcomes) and outcomes[-1].returncode == 0, outcomes

    # -- the portal -----------------------------------------------------------------------------

    def start_portal(self) -> None:
        log = (self.logs / "simulator.log").open("ab")
        self._simulator = subprocess.Popen(
            [
                B2B,
                "sim",
                "--port",
                str(self.port),
                "--state-file",
                str(self.data / "sparklayer_sim.state"),
            ],
            env=self.env(),
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.sim_url}/_sim/state", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            if self._simulator.poll() is not None:
                raise RuntimeError(f"the simulator exited: see {self.logs / 'simulator.log'}")
            time.sleep(0.1)
        raise RuntimeError("the simulator did not come up in 60 s")

    def stop_portal(self) -> None:
        """The portal goes away (SIGTERM: the simulator saves its state and stops)."""
        if self._simulator is None:
            return
        self._simulator.send_signal(signal.SIGTERM)
        try:
            self._simulator.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self._simulator.pid, signal.SIGKILL)
            self._simulator.wait()
        self._simulator = None

    def sim(self, method: str, path: str, body: Any = None) -> Any:
        response = self._session.request(method, f"{self.sim_url}{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.json() if response.content else None

    def faults(self, **settings: Any) -> None:
        """``PUT /_sim/faults``: replaces the whole fault configuration (``{}``: none)."""
        self.sim("PUT", "/_sim/faults", settings)

    # -- set-up ---------------------------------------------------------------------------------

    def proxy(self, **options: Any) -> Any:
        """A :class:`~benchmarks.reliability.proxy.PortalProxy` in front of the simulator that
        records the tokens it sees into this sandbox's needles."""
        from benchmarks.reliability.proxy import PortalProxy

        return PortalProxy(self.sim_url, tokens=self.tokens, **options)

    def __enter__(self) -> Sandbox:
        self.start_portal()
        # The tap: a fault-free proxy every run goes through unless a scenario puts another
        # one in front, so that every token the pipeline is issued is known to the scan.
        self._tap = self.proxy().__enter__()
        self.tap_url = self.portal_url = self._tap.url
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._tap is not None:
            self._tap.__exit__()
        self.stop_portal()
        self._session.close()
        if not os.environ.get(KEEP_VARIABLE):
            shutil.rmtree(self.root, ignore_errors=True)

    def prepare(self, *, customers: int = 40, skus: int = 200) -> None:
        """Seed the ERP and put the master data in the portal (accounts, prices, stock)."""
        for args in (
            ("seed", "--customers", str(customers), "--skus", str(skus)),
            ("run", "--format", "json"),
        ):
            outcome = self.cli(*args)
            if outcome.returncode != 0:
                raise RuntimeError(f"set-up step {args} failed: {outcome.stderr[-2000:]}")
        from b2b_pipeline.connectors.erp.gateway import ErpGateway

        erp = ErpGateway(f"sqlite:///{self.erp_path}")
        try:
            customers_frame = erp.read_customers()
            products = erp.read_products()
        finally:
            erp.dispose()
        good = customers_frame["active"] & ~customers_frame["credit_hold"]
        self.accounts: list[str] = customers_frame.loc[good, "account_code"].tolist()
        self.skus: list[str] = products.loc[products["active"], "sku"].tolist()

    # -- buyers ---------------------------------------------------------------------------------

    def order_body(self, rng: Random, *, purchase_type: str = "order") -> dict[str, Any]:
        lines = rng.sample(self.skus, rng.randint(1, 8))
        return {
            "customer": rng.choice(self.accounts),
            "type": purchase_type,
            "payment_method": "on_account",
            "customer_reference": f"PO-{rng.randrange(10**6):06d}",
            "lines": [{"sku": sku, "quantity": rng.randint(1, 40)} for sku in lines],
        }

    def place(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """A buyer places a purchase; over the credit limit, the buyer pays by card."""
        response = self._session.post(f"{self.sim_url}/_sim/orders", json=body, timeout=30)
        if response.status_code == 403:
            card = {**body, "payment_method": "platform_upfront"}
            response = self._session.post(f"{self.sim_url}/_sim/orders", json=card, timeout=30)
        return response.json() if response.status_code == 201 else None

    def place_orders(
        self, count: int, rng: Random, *, types: Sequence[str] = ("order",)
    ) -> list[str]:
        """``count`` purchases from random accounts; returns the ids the portal gave them."""
        from concurrent.futures import ThreadPoolExecutor

        from b2b_pipeline.connectors.sparklayer.purchases import purchase_id

        bodies = [self.order_body(rng, purchase_type=rng.choice(types)) for _ in range(count)]
        with ThreadPoolExecutor(4) as pool:
            placed = list(pool.map(self.place, bodies))
        return [pid for pid in (purchase_id(p) for p in placed if p) if pid]

    def change_purchase(self, purchase_id: str, **change: Any) -> bool:
        response = self._session.patch(
            f"{self.sim_url}/_sim/purchases/{purchase_id}", json=change, timeout=30
        )
        return response.ok

    # -- reading the systems --------------------------------------------------------------------

    def portal_purchases(self, since: dt.datetime | None = None) -> list[Any]:
        """Every purchase the portal holds (changed at or after ``since`` when given), read
        from the portal itself (not through a proxy)."""
        from b2b_pipeline.connectors.sparklayer.client import SparkLayerClient

        with SparkLayerClient(
            self.sim_url, SITE_ID, CLIENT_ID, self.secret, requests_per_second=1000
        ) as client:
            return list(client.iter_purchases(updated_gte=since))

    def close_packs(self) -> None:
        """The month's reconciliation as close packs (CSV and HTML), for the secret scan."""
        month = utc_now().strftime("%Y-%m")
        for fmt in ("csv", "html"):
            out = self.reports / f"close-pack-{month}.{fmt}"
            self.cli("reconcile", "--month", month, "--format", fmt, "--out", str(out))

    def secret_leaks(self, *, close_packs: bool = True) -> list[str]:
        """Where the client secret or an issued token shows (``secrets.py``): every command's
        output, every file of the data folder, ``DAGSTER_HOME`` and the logs, every audit
        column, every run's event records, the close packs. Call when no run is active."""
        from benchmarks.reliability.secrets import (
            Needles,
            scan_audit,
            scan_dagster_records,
            scan_files,
        )

        if close_packs:
            self.close_packs()
        needles = Needles(self.secret, set(self.tokens))
        places = [
            f"{kind} in the output of `{' '.join(o.args)}`"
            for o in self.outputs
            for kind in needles.found_in(o.output)
        ]
        places += scan_files(needles, [self.logs, self.data, self.dagster_home, self.reports])
        places += scan_audit(needles, self.audit_path)
        places += scan_dagster_records(needles, self.dagster_home)
        places += self.found_elsewhere
        found = sorted(set(places))
        SCANS.append(Scan(self.root.name, len(needles.tokens), len(self.outputs), found))
        return found


def in_own_sandbox(
    name: str, body: Callable[[Sandbox], Row], *, close_packs: bool = True
) -> list[Row]:
    """One scenario row in a sandbox of its own (prepared with the master data), then the
    secret scan over it: a part the suite can run beside the others."""
    with Sandbox(name) as sandbox:
        sandbox.prepare()
        row = body(sandbox)
        leaks = sandbox.secret_leaks(close_packs=close_packs)
    if leaks:
        row.notes.append(f"the client secret appears in: {', '.join(leaks)}")
        row.failed = True
    return [row]


def _order_metadata(outcome: Outcome) -> dict[str, Any] | None:
    """The order intake's metadata in a ``run --format json`` summary (None when absent)."""
    import json

    try:
        assets = json.loads(outcome.stdout)["assets"]
    except (ValueError, KeyError, TypeError):
        return None
    found = assets.get("erp_sales_orders") if isinstance(assets, dict) else None
    return found if isinstance(found, dict) else None


def handled_purchases(outcome: Outcome) -> int | None:
    """How many purchases a ``run --format json`` handled (None when it says nothing)."""
    metadata = _order_metadata(outcome)
    try:
        return int(metadata["received"]) if metadata is not None else None
    except (KeyError, TypeError, ValueError):
        return None


def more_waiting(outcome: Outcome) -> bool:
    """Whether the run says it left purchases for the next one (a full batch)."""
    metadata = _order_metadata(outcome)
    if metadata is not None and "more_waiting" in metadata:
        return bool(metadata["more_waiting"])
    handled = handled_purchases(outcome)
    return handled is not None and handled >= FULL_BATCH


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
