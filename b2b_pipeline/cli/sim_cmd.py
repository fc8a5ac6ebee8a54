"""``b2b-pipeline sim``: serve the embedded SparkLayer simulator."""

from __future__ import annotations

import click

from b2b_pipeline.cli import paths
from b2b_pipeline.config.settings import SIMULATOR_HOST, SIMULATOR_PORT


@click.command()
@click.option("--host", default=SIMULATOR_HOST, show_default=True)
@click.option("--port", default=SIMULATOR_PORT, show_default=True, type=int)
@click.option(
    "--state-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="where the portal's state is kept between restarts [default: data/sparklayer_sim.state]",
)
def sim(host: str, port: int, state_file: str | None) -> None:
    """Serve the embedded SparkLayer simulator (a real HTTP server; Ctrl-C stops it).

    It accepts the credentials in SPARKLAYER_SITE_ID / SPARKLAYER_CLIENT_ID /
    SPARKLAYER_CLIENT_SECRET, or the documented demo values when they are unset.
    """
    from pathlib import Path

    from b2b_pipeline.simulator.server import serve_forever

    settings = paths.settings()
    state_path = Path(state_file) if state_file else settings.data_dir / "sparklayer_sim.state"
    state_path.parent.mkdir(parents=True, exist_ok=True)
    click.echo(f"SparkLayer simulator on http://{host}:{port} (state: {state_path})", err=True)
    serve_forever(
        host,
        port,
        site_id=settings.sparklayer_site_id,
        client_id=settings.sparklayer_client_id,
        client_secret=settings.sparklayer_client_secret,
        state_path=state_path,
    )
