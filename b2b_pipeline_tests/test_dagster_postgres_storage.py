"""Dagster's runs and events in PostgreSQL (dagster-postgres), configured exactly as
``deploy/dagster.postgres.yaml`` ships: a deployment beyond one machine needs no code change.

A job of our own definitions runs against the real simulator and ERP with that instance; a
second instance (another process would do the same) reads the run and its materializations
back, and the rows are in the PostgreSQL database itself.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.postgres


@pytest.fixture
def postgres_instance_home(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A DAGSTER_HOME holding deploy/dagster.postgres.yaml, its variables naming the fresh
    database of ``postgres_url``."""
    url = sa.engine.make_url(postgres_url)
    monkeypatch.setenv("DAGSTER_PG_HOST", "127.0.0.1")
    monkeypatch.setenv("DAGSTER_PG_USER", url.username or "postgres")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", url.password or "")
    monkeypatch.setenv("DAGSTER_PG_DB", url.database)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "deploy" / "dagster.postgres.yaml").read_text())
    return home


def test_runs_and_materializations_are_stored_in_postgres(
    pipeline, postgres_url: str, postgres_instance_home: Path
) -> None:
    job = pipeline.definitions().resolve_job_def("customer_sync_job")
    with dg.DagsterInstance.from_config(str(postgres_instance_home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        result = job.execute_in_process(instance=instance)
        assert result.success
        run_id = result.run_id

    # A fresh instance, as the webserver or another worker would open it.
    with dg.DagsterInstance.from_config(str(postgres_instance_home)) as reader:
        run = reader.get_run_by_id(run_id)
        assert run is not None
        assert run.job_name == "customer_sync_job"
        assert run.status == dg.DagsterRunStatus.SUCCESS
        records = reader.fetch_materializations(dg.AssetKey("portal_customers"), limit=5).records
        assert [r.run_id for r in records] == [run_id]
        metadata = records[0].asset_materialization.metadata
        assert metadata["accounts"].value == len(pipeline.erp.read_customers())
        assert metadata["created"].value == metadata["accounts"].value

    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            status = conn.execute(
                sa.text("SELECT status FROM runs WHERE run_id = :run_id"), {"run_id": run_id}
            ).scalar_one()
            materialized = conn.execute(
                sa.text(
                    "SELECT DISTINCT asset_key FROM event_logs WHERE run_id = :run_id "
                    "AND dagster_event_type = 'ASSET_MATERIALIZATION' ORDER BY asset_key"
                ),
                {"run_id": run_id},
            ).scalars()
            keys = {dg.AssetKey.from_db_string(k).to_user_string() for k in materialized}
    finally:
        engine.dispose()
    assert status == "SUCCESS"
    assert {"erp_customers", "portal_customer_groups", "portal_customers"} <= keys
