"""``b2b-pipeline seed``: demo data for the reference ERP and the simulator."""

from __future__ import annotations

import sys
import time

import click

from b2b_pipeline.cli import paths


def _wait_for_portal(base_url: str, seconds: float) -> None:
    import requests

    deadline = time.monotonic() + seconds
    while True:
        try:
            requests.get(f"{base_url}/_sim/state", timeout=2).raise_for_status()
            return
        except requests.RequestException:
            if time.monotonic() > deadline:
                click.echo(f"b2b-pipeline: the simulator at {base_url} did not answer", err=True)
                sys.exit(2)
            time.sleep(0.2)


@click.command()
@click.option("--customers", default=40, show_default=True, help="ERP customer accounts")
@click.option("--skus", default=200, show_default=True, help="products in the catalogue")
@click.option(
    "--price-rows",
    default=None,
    type=int,
    help="total price-list rows (e.g. 1000000 for the benchmark size); default: what the "
    "customers and SKUs imply",
)
@click.option("--seed", "rng_seed", default=7, show_default=True, help="random seed")
@click.option("--if-empty", is_flag=True, help="do nothing when the ERP already has customers")
@click.option(
    "--portal/--no-portal",
    default=True,
    show_default=True,
    help="also register the demo's self-registered companies in the simulator",
)
@click.option("--wait-for-portal", default=0.0, help="seconds to wait for the simulator to come up")
def seed(
    customers: int,
    skus: int,
    price_rows: int | None,
    rng_seed: int,
    if_empty: bool,
    portal: bool,
    wait_for_portal: float,
) -> None:
    """Fill the reference ERP (and the simulator) with deterministic demo data."""
    from b2b_pipeline.connectors.erp.gateway import ErpGateway
    from b2b_pipeline.demo import seed_portal
    from b2b_pipeline.demo.erp_seed import demo_erp_frames, summarise

    settings = paths.settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    gateway = ErpGateway(settings.erp_database_url)
    try:
        gateway.ping()
        gateway.create_schema()
        if if_empty and not gateway.read_customers().empty:
            click.echo("The ERP already has data: nothing seeded.")
            return
        started = time.perf_counter()
        # One line per stage (on stderr, so stdout stays the result): at benchmark sizes the
        # seed takes long enough that a silent terminal looks hung.
        click.echo(
            f"[1/2] Generating the demo merchant: {customers:,} customers, {skus:,} SKUs …",
            err=True,
        )
        frames = demo_erp_frames(
            customers=customers, skus=skus, price_rows=price_rows, seed=rng_seed
        )
        rows = sum(len(frame) for frame in frames.values())
        click.echo(
            f"[2/2] Writing {rows:,} rows to the ERP ({time.perf_counter() - started:.1f} s "
            "so far) …",
            err=True,
        )
        gateway.replace_master_data(frames)
        click.echo(f"ERP seeded in {time.perf_counter() - started:.1f} s: {summarise(frames)}")
    finally:
        gateway.dispose()
    if not portal:
        return
    if wait_for_portal:
        _wait_for_portal(settings.sparklayer_base_url, wait_for_portal)
    if not _is_simulator(settings.sparklayer_base_url):
        click.echo("The portal is not the simulator: no demo companies registered.")
        return
    companies = seed_portal(settings.sparklayer_base_url)
    click.echo(f"Portal: {len(companies)} self-registered companies with no ERP account.")


def _is_simulator(base_url: str) -> bool:
    """Only the embedded simulator answers /_sim/; a real SparkLayer is never seeded."""
    import requests

    try:
        return requests.get(f"{base_url}/_sim/state", timeout=5).ok
    except requests.RequestException:
        return False
