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
import time

from dg_dev import CLIENT, SECRET, SITE, DgDev, environment, workspace

JOBS = ("customer_sync_job", "price_sync_job", "inventory_sync_job", "order_intake_job")


def ui_run_seconds(dev: DgDev, job: str) -> float:
    """From the launch click to the run's end, as the person watching the UI sees it."""
    run_id = dev.launch(job)
    while True:
        run = dev.run_status(run_id)
        if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            if run["status"] != "SUCCESS":
                raise RuntimeError(f"{job} ended {run['status']}")
            return run["endTime"] - run["creationTime"]
        time.sleep(0.5)


def main() -> None:
    workdir, data, home = workspace("bench_job_overhead_")

    from b2b_pipeline.connectors.erp.gateway import ErpGateway
    from b2b_pipeline.demo import seed_erp
    from b2b_pipeline.simulator.server import SimulatorServer

    server = SimulatorServer("127.0.0.1", 0, site_id=SITE, client_id=CLIENT, client_secret=SECRET)
    server.start()
    env = environment(server.url, data, home)
    os.environ.update(env)
    gateway = ErpGateway(env["ERP_DATABASE_URL"])
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

    try:
        with DgDev(env, workdir / "dg_dev.log") as dev:
            ui_s = {job: min(ui_run_seconds(dev, job) for _ in range(2)) for job in JOBS}
    finally:
        server.stop()

    load = os.getloadavg()
    print(f"job wall time, demo seed; machine load {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")
    print(f"{'job':<22} {'UI / headless':>14} {'dg dev':>9} {'headless':>9}")
    for job in JOBS:
        ratio = ui_s[job] / headless_s[job]
        print(f"{job:<22} {ratio:>13.1f}x {ui_s[job]:>8.1f}s {headless_s[job]:>8.1f}s")


if __name__ == "__main__":
    main()
